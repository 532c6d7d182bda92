"""Scoring checked with an oracle 'model' whose mistakes are planted by hand; seeded text
windows and a perplexity equal to Hugging Face's own ``labels=`` loss on the tiny Llama."""

import pytest
import torch

from arithinterp.evaluate import (
    DEFAULT_TEXT,
    compute_perplexity,
    evaluate,
    make_text_windows,
    read_text,
    run_greedy,
)
from arithinterp.pretrained import load_pretrained
from arithinterp.tasks import TaskSpec, make_dataset
from arithinterp.tasks.vocab import CHAR_VOCAB

VOCAB_SIZE = CHAR_VOCAB.size
DIGIT_IDS = CHAR_VOCAB.digit_ids().tolist()


class Oracle(torch.nn.Module):
    """Predicts each next token from a table of full sequences; `flips` plants wrong digits."""

    def __init__(self, data, flips=None):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.table = {tuple(row[: data.spec.prompt_len].tolist()): row for row in data.tokens}
        self.flips = flips or {}  # (prompt tuple, absolute position) -> wrong token id
        self.prompt_len = data.spec.prompt_len

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, VOCAB_SIZE)
        for i, row in enumerate(tokens):
            key = tuple(row[: self.prompt_len].tolist())
            full = self.table[key]
            for t in range(tokens.shape[1]):
                nxt = self.flips.get((key, t + 1), full[t + 1] if t + 1 < len(full) else 0)
                logits[i, t, nxt] = 1.0
        return logits


def test_perfect_oracle_scores_one_and_greedy_reproduces_targets():
    spec = TaskSpec(digits_a=2, digits_b=2, format="plain")
    data = make_dataset(spec, torch.tensor([12, 99, 50]), torch.tensor([34, 99, 50]))
    gen = run_greedy(Oracle(data), data.prompts, spec.seq_len - spec.prompt_len, batch_size=2)
    assert torch.equal(gen, data.tokens[:, spec.prompt_len :])
    result = evaluate(Oracle(data), data)
    assert result.exact_match == 1.0 and result.digit_accuracy == [1.0, 1.0, 1.0]
    assert result.worst().empty


def test_planted_mistakes_are_counted_per_digit_and_by_carries():
    spec = TaskSpec(digits_a=2, digits_b=2, format="reversed")
    data = make_dataset(spec, torch.tensor([12, 99, 50, 15]), torch.tensor([34, 99, 50, 15]))
    key = lambda i: tuple(data.tokens[i, : spec.prompt_len].tolist())  # noqa: E731
    pos = spec.answer_positions()
    wrong = lambda i, k: DIGIT_IDS[(int(data.answer_digits[i, k]) + 1) % 10]  # noqa: E731
    # 99+99=198: tens digit wrong; 15+15=30: units and hundreds wrong
    flips = {(key(1), pos[1]): wrong(1, 1), (key(3), pos[0]): wrong(3, 0),
             (key(3), pos[2]): wrong(3, 2)}
    result = evaluate(Oracle(data, flips), data)
    assert result.exact_match == 0.5
    assert result.digit_accuracy == [0.75, 0.75, 0.75]
    by = dict(zip(result.by_carries["n_carries"], result.by_carries["exact_match"], strict=True))
    # carries: 12+34 none, 50+50 one (into hundreds), 15+15 one (into tens), 99+99 two
    assert by == {0: 1.0, 1: 0.5, 2: 0.0}
    worst = result.worst()
    assert worst["a"].tolist() == [15, 99] and worst["n_wrong_digits"].tolist() == [2, 1]
    summary = result.summary()
    assert summary["n"] == 4 and summary["exact_match"] == 0.5


def test_scratchpad_scores_the_final_answer_and_the_whole_sequence_separately():
    spec = TaskSpec(digits_a=2, digits_b=2, format="scratchpad")
    data = make_dataset(spec, torch.tensor([12, 47]), torch.tensor([34, 38]))
    key = tuple(data.tokens[0, : spec.prompt_len].tolist())
    step_pos = spec.prompt_len  # first scratchpad token
    flips = {(key, step_pos): DIGIT_IDS[5]}  # wrong step, but the oracle still answers right
    result = evaluate(Oracle(data, flips), data)
    assert result.exact_match == 1.0 and result.sequence_match == 0.5


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_pretrained(tiny_llama_dir)


def test_text_windows_are_seeded_chunks_of_the_tokenized_text(llama):
    whole = read_text()
    assert whole == read_text(DEFAULT_TEXT) and len(whole) > 100_000
    text = whole[:20_000]
    ids = torch.tensor(llama.tokenizer.encode(text))
    windows = make_text_windows(llama, text, window=16, n=3, seed=5)
    assert windows.shape == (3, 16)
    chunks = ids[:len(ids) // 16 * 16].view(-1, 16)  # the text cut end to end
    for w in windows:
        assert (chunks == w).all(1).any()
    assert torch.equal(windows, make_text_windows(llama, text, window=16, n=3, seed=5))
    assert not torch.equal(windows, make_text_windows(llama, text, window=16, n=3, seed=6))
    with pytest.raises(ValueError, match="2 windows of 16, 3 asked for"):
        make_text_windows(llama, "0123456789" * 4, window=16, n=3)
    with pytest.raises(ValueError, match="neither"):
        read_text("/no/such/file.txt")


def test_perplexity_is_exp_of_hugging_faces_own_loss(llama, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    windows = make_text_windows(llama, read_text(), window=32, n=2, seed=0)
    with torch.no_grad():
        losses = [float(hf(input_ids=w[None], labels=w[None]).loss) for w in windows]
    expected = torch.tensor(losses).mean().exp()  # equal lengths: mean of token means
    assert compute_perplexity(llama.model, windows[:1]) == pytest.approx(
        float(torch.tensor(losses[0]).exp()), rel=1e-5)
    assert compute_perplexity(llama.model, windows, batch_size=1) == pytest.approx(
        float(expected), rel=1e-5)
    assert 40 < float(expected) < 1_000  # a random 51-token model: near-uniform, worse
