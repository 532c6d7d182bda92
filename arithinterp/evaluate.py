"""Greedy generation and accuracy breakdowns (exact match, per digit, by number of carries)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from arithinterp.models import HookedModel
from arithinterp.tasks import Dataset
from arithinterp.tasks.vocab import decode


@torch.inference_mode()
def run_greedy(
    model: HookedModel, prompts: Int[Tensor, "batch pos"], n_new: int, *, batch_size: int = 512
) -> Int[Tensor, "batch n_new"]:
    """Append n_new argmax tokens to each prompt (no KV cache: exact for every architecture)."""
    if n_new < 1:
        raise ValueError(f"n_new must be >= 1, got {n_new}")
    device = next(model.parameters()).device
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

