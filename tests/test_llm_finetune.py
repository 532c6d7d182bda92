"""LLM fine-tuning data and perplexity: prompts followed by their answers with the loss on the
answer only, right-padded; seeded text windows; the perplexity equal to Hugging Face's own
``labels=`` loss on the tiny Llama."""

import pytest
import torch

from arithinterp.finetune import Schedule, copy_model, finetune
from arithinterp.llm import prompt_text
from arithinterp.llm_finetune import (
    DEFAULT_TEXT,
    compute_perplexity,
    make_answer_data,
    make_text_windows,
    read_text,
)
from arithinterp.pretrained import load_pretrained
from arithinterp.tasks import PromptSuite


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_pretrained(tiny_llama_dir)


def test_answer_data_masks_the_answer_and_pads_on_the_right(llama):
    suite = PromptSuite(n_shots=2)
    problems = [(3, 4), (9, 8)]  # answers of one and two tokens: one is padded
    data = make_answer_data(llama, suite, problems)
    eos = llama.tokenizer.eos_id
    decode = llama.tokenizer.decode
    lengths = [len(llama.tokenizer.encode(prompt_text(llama, suite, a, b))) for a, b in problems]
    assert lengths[0] == lengths[1] and data.tokens.shape == (2, lengths[0] + 3)
    for row, (n, answer) in enumerate(zip(lengths, ["7", "17"], strict=True)):
        mask = data.loss_mask[row]
        assert decode(data.tokens[row, :n].tolist()) == prompt_text(llama, suite, *problems[row])
        assert decode(data.tokens[row, mask][:-1].tolist()) == answer
        assert int(data.tokens[row, mask][-1]) == eos  # the answer ends the sequence
        assert mask.sum() == len(answer) + 1 and not mask[:n].any()
    assert int(data.tokens[0, -1]) == eos and not data.loss_mask[0, -1]  # padding: no loss
    assert data.problems == tuple(problems)
    with pytest.raises(ValueError, match="no problems"):
        make_answer_data(llama, suite, [])


def test_padding_does_not_change_the_loss_of_a_causal_model(llama):
    suite = PromptSuite(n_shots=2)
    mixed = make_answer_data(llama, suite, [(3, 4), (9, 8)])
    alone = make_answer_data(llama, suite, [(3, 4)])
    logits = [llama.model(d.tokens)[0, :alone.tokens.shape[1]] for d in (mixed, alone)]
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
    model = copy_model(llama.model)  # and the fine-tuning loop takes the data as it is
    result = finetune(model, mixed, Schedule(max_steps=2, batch_size=2, warmup_steps=0))
    assert len(result.curve) == 2 and result.curve["loss"].notna().all()


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
