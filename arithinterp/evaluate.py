"""Greedy generation and accuracy breakdowns (exact match, per digit, by number of carries),
teacher-forced per-digit losses, one problem's prediction with its top alternatives, and the
perplexity of held-out text.

`make_text_windows` cuts a held-out English text (by default the help topics of CPython's
`pydoc_data.topics`, installed with every Python, so it is there offline) into windows of a
fixed number of tokens and keeps a seeded selection of them; `compute_perplexity` is the
token-level perplexity on them: exp of the mean next-token cross-entropy over every
predicted token of every window (as Hugging Face's ``labels=`` loss, per window): what
fine-tuning an LLM on arithmetic costs its language.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from arithinterp.models import HookedModel, LoadedModel, device_of
from arithinterp.tasks import Dataset, Task, make_dataset


@torch.inference_mode()
def run_greedy(
    model: HookedModel, prompts: Int[Tensor, "batch pos"], n_new: int, *, batch_size: int = 512
) -> Int[Tensor, "batch n_new"]:
    """Append n_new argmax tokens to each prompt (no KV cache: exact for every architecture)."""
    if n_new < 1:
        raise ValueError(f"n_new must be >= 1, got {n_new}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = device_of(model)
    out = []
    for start in range(0, prompts.shape[0], batch_size):
        seq = prompts[start : start + batch_size].to(device)
        for _ in range(n_new):
            nxt = model(seq)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
        out.append(seq[:, prompts.shape[1] :].cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class EvalResult:
    """Accuracies of one model on one dataset, with the per-example table behind them."""

    exact_match: float  # final answer (sign and every digit) right
    sequence_match: float  # every generated token right, scratchpad / CoT included
    digit_accuracy: list[float]  # per answer digit, least significant first
    by_carries: pd.DataFrame  # n_carries, count, exact_match
    examples: pd.DataFrame  # one row per problem

    def worst(self, k: int = 10) -> pd.DataFrame:
        """The k wrong answers with the most wrong digits (ties: most carries first)."""
        wrong = self.examples[~self.examples["correct"]]
        return wrong.sort_values(["n_wrong_digits", "n_carries"], ascending=False).head(k)

    def summary(self) -> dict:
        """JSON-ready numbers: exact / sequence match, per-digit accuracy, by carries."""
        return {
            "n": len(self.examples),
            "exact_match": self.exact_match,
            "sequence_match": self.sequence_match,
            "digit_accuracy": self.digit_accuracy,
            "by_carries": self.by_carries.to_dict(orient="records"),
        }


def evaluate(model: HookedModel, data: Dataset, *, batch_size: int = 512) -> EvalResult:
    """Generate greedily from each prompt of `data` and score the answers."""
    spec = data.spec
    p = spec.prompt_len
    generated = run_greedy(model, data.prompts, spec.seq_len - p, batch_size=batch_size)
    target = data.tokens[:, p:]
    answer_cols = [pos - p for pos in spec.answer_positions()]
    expected_digits = target[:, answer_cols]
    digit_ok = generated[:, answer_cols] == expected_digits
    correct = digit_ok.all(dim=1)
    if spec.signed:
        s = spec.sign_position() - p
        correct &= generated[:, s] == target[:, s]
    seq_ok = (generated == target).all(dim=1)
    decode = spec.vocab.decode
    examples = pd.DataFrame({
        "a": data.a.numpy(), "b": data.b.numpy(), "answer": data.answer.numpy(),
        "expected": [decode(row) for row in target],
        "generated": [decode(row) for row in generated],
        "correct": correct.numpy(), "sequence_correct": seq_ok.numpy(),
        "n_wrong_digits": (~digit_ok).sum(dim=1).numpy(), "n_carries": data.n_carries.numpy(),
    })
    by_carries = (examples.groupby("n_carries")["correct"].agg(count="size", exact_match="mean")
                  .reset_index())
    return EvalResult(
        exact_match=float(correct.double().mean()), sequence_match=float(seq_ok.double().mean()),
        digit_accuracy=[float(x) for x in digit_ok.double().mean(dim=0)],
        by_carries=by_carries, examples=examples,
    )


def _token_scores(at: Float[Tensor, "batch k d_vocab"], target: Int[Tensor, "batch k"]
                  ) -> tuple[Bool[Tensor, "batch k"], Float[Tensor, "batch k"]]:
    """Per scored position: argmax right, and margin = logit(target) - max logit(any other)."""
    correct_logit = at.gather(-1, target[..., None])[..., 0]
    others = at.scatter(-1, target[..., None], float("-inf"))
    return at.argmax(-1) == target, correct_logit - others.max(-1).values


def score_answers(spec: Task, logits: Float[Tensor, "batch pos d_vocab"],
                  tokens: Int[Tensor, "batch pos"]) -> tuple[Bool[Tensor, " batch"],
                                                             Bool[Tensor, "batch answer_digit"],
                                                             Float[Tensor, "batch answer_digit"]]:
    """Teacher-forced, from one forward pass: (every answer token right, per-digit right,
    per-digit margin = logit(correct) - max logit(any other token)). For plain and reversed
    formats the first is the greedy exact match (the first forced mistake is the first
    greedy one)."""
    positions = torch.tensor(spec.answer_positions(), device=logits.device)
    digit_ok, margin = _token_scores(logits[:, positions - 1].float(), tokens[:, positions])
    exact = digit_ok.all(-1)
    if spec.signed:
        s = spec.sign_position()
        exact &= logits[:, s - 1].argmax(-1) == tokens[:, s]
    return exact, digit_ok, margin


def score_first_token(logits: Float[Tensor, "batch pos d_vocab"], target: Int[Tensor, " batch"]
                      ) -> tuple[Bool[Tensor, " batch"], Bool[Tensor, "batch 1"],
                                 Float[Tensor, "batch 1"]]:
    """`score_answers` for prompts that end where the answer starts (an LLM's): whether the
    last position's argmax is the answer's first token, and its margin over any other."""
    ok, margin = _token_scores(logits[:, -1:].float(), target.to(logits.device)[:, None])
    return ok[:, 0], ok, margin


@torch.inference_mode()
def teacher_forced_correct(model: HookedModel, data: Dataset, *, batch_size: int = 512
                           ) -> Bool[Tensor, " batch"]:
    """Whether the model gets every answer token of each problem right, given the true
    prefix (see `score_answers`)."""
    device = device_of(model)
    out = []
    for start in range(0, len(data), batch_size):
        tokens = data.tokens[start : start + batch_size].to(device)
        out.append(score_answers(data.spec, model(tokens), tokens)[0].cpu())
    return torch.cat(out)


@torch.inference_mode()
def answer_digit_loss(model: HookedModel, data: Dataset, *, batch_size: int = 512
                      ) -> list[float]:
    """Mean teacher-forced cross-entropy of each answer digit (least significant first)."""
    positions = torch.tensor(data.spec.answer_positions())
    device = device_of(model)
    total = torch.zeros(len(positions), dtype=torch.float64)
    for start in range(0, len(data), batch_size):
        tokens = data.tokens[start : start + batch_size].to(device)
        logits = model(tokens)[:, positions - 1].float()  # [batch digit d_vocab]
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, positions].flatten(),
                               reduction="none").view(len(tokens), -1)
        total += loss.double().sum(0).cpu()
    return [float(x) for x in total / len(data)]


@dataclass(frozen=True)
class Prediction:
    """A model's greedy answer to one problem, with its top next tokens at each position."""

    answer: str  # as a number reads: sign, then digits most significant first
    correct_answer: str
    correct: bool
    generated: str  # every generated token (scratchpad / CoT included), specials shown
    expected: str
    top: pd.DataFrame  # position, label, expected, generated, top 1..k ("token (prob)")


@torch.inference_mode()
def predict_problem(model: HookedModel, task: Task, a: int, b: int, k: int = 3
                    ) -> Prediction:
    """Greedy continuation of problem (a, b) and the top-k next tokens at each generated
    position (from one forward pass over the model's own continuation)."""
    vocab = task.vocab
    data = make_dataset(task, torch.tensor([a]), torch.tensor([b]))
    p = task.prompt_len
    generated = run_greedy(model, data.prompts, task.seq_len - p)
    sequence = torch.cat([data.prompts, generated], dim=1)
    probs = model(sequence.to(device_of(model)))[0].float().softmax(-1).cpu()
    labels = task.position_labels()
    rows = []
    for pos in range(p, task.seq_len):
        top = probs[pos - 1].topk(min(k, probs.shape[-1]))
        row = {"position": pos, "label": labels[pos],
               "expected": vocab.tokens[data.tokens[0, pos]],
               "generated": vocab.tokens[sequence[0, pos]]}
        for r, (pr, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist(),
                                          strict=True)):
            row[f"top {r + 1}"] = f"{vocab.tokens[idx]} ({pr:.3f})"
        rows.append(row)
    digits = "".join(vocab.tokens[sequence[0, q]] for q in reversed(task.answer_positions()))
    answer = str(int(digits)) if digits.isdigit() else digits
    if task.signed and vocab.tokens[sequence[0, task.sign_position()]] == "-":
        answer = "-" + answer
    checked = task.answer_positions() + ([task.sign_position()] if task.signed else [])
    return Prediction(
        answer=answer, correct_answer=str(task.metadata(a, b).answer),
        correct=bool((sequence[0, checked] == data.tokens[0, checked]).all()),
        generated=vocab.decode(generated[0], skip_special=False),
        expected=vocab.decode(data.tokens[0, p:], skip_special=False), top=pd.DataFrame(rows))


DEFAULT_TEXT = "pydoc_data.topics"  # the name a config uses for the default text


def read_text(source: str = DEFAULT_TEXT) -> str:
    """The held-out text: CPython's pydoc help topics in key order (`DEFAULT_TEXT`), or the
    UTF-8 file `source`."""
    if source == DEFAULT_TEXT:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"text {source!r} is neither {DEFAULT_TEXT} nor a file")
    return path.read_text(encoding="utf-8")


def make_text_windows(loaded: LoadedModel, text: str, *, window: int, n: int, seed: int = 0
                      ) -> Int[Tensor, "batch pos"]:
    """`n` windows of `window` consecutive tokens of `text` (cut end to end, the rest
    dropped), drawn with `seed` and kept in text order; an error when the text has fewer."""
    ids = loaded.tokenizer.encode(text)
    available = len(ids) // window
    if available < n:
        raise ValueError(f"the text has {len(ids)} tokens: {available} windows of {window}, "
                         f"{n} asked for")
    chosen = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:n]
    return torch.tensor(ids[:available * window]).view(available, window)[chosen.sort().values]


@torch.inference_mode()
def compute_perplexity(model: HookedModel, windows: Int[Tensor, "batch pos"], *,
                       batch_size: int = 8) -> float:
    """Token-level perplexity: exp of the mean cross-entropy of each next token given the
    window's tokens before it, over every window (lower is better)."""
    device = device_of(model)
    total, count = 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        part = windows[start:start + batch_size].to(device)
        logits = model(part)[:, :-1]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), part[:, 1:].flatten(),
                               reduction="sum")
        total += float(loss)
        count += part[:, 1:].numel()
    return float(torch.tensor(total / count).exp())
