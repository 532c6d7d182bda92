"""Metrics on answer tokens, and the normalized effect every patching result reports.

A metric maps logits to one value per prompt; callers aggregate. Every metric reads the
logits at one position (``pos``: the position whose next-token prediction is the answer
digit), so engines that only compute that position can call ``score`` directly.

Sign convention: logit difference = logit(correct) - logit(wrong), correct = the clean
answer's token, wrong = the corrupted answer's token. Normalized effect =
(patched - corrupted) / (clean - corrupted): 0 = the corrupted run, 1 = the clean run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from arithinterp.tasks import PromptPairs
from arithinterp.tasks.vocab import DIGIT_IDS

MetricKind = Literal["logit_diff", "prob", "logprob"]
METRIC_KINDS: tuple[str, ...] = ("logit_diff", "prob", "logprob")
MIN_GAP = 1e-4  # |clean - corrupted| below this: the corruption does not move the metric


@dataclass(frozen=True)
class AnswerMetric:
    """A per-prompt metric of the logits at position `pos`."""

    pos: int
    correct: Int[Tensor, " batch"]
    wrong: Int[Tensor, " batch"]
    kind: MetricKind = "logit_diff"
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"kind must be one of {METRIC_KINDS}, got {self.kind!r}")

    def score(self, logits_at_pos: Float[Tensor, "batch d_vocab"]) -> Float[Tensor, " batch"]:
        """The metric from the logits at `pos` only."""
        correct = self.correct.to(logits_at_pos.device)
        if self.kind == "logit_diff":
            wrong = self.wrong.to(logits_at_pos.device)
            picked = logits_at_pos.gather(1, torch.stack([correct, wrong], dim=1))
            return picked[:, 0] - picked[:, 1]
        logprobs = logits_at_pos.float().log_softmax(-1).gather(1, correct[:, None])[:, 0]
        return logprobs.exp() if self.kind == "prob" else logprobs

    def __call__(self, logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, " batch"]:
        return self.score(logits[:, self.pos])

    def subset(self, idx: Tensor) -> AnswerMetric:
        """The same metric on a subset of the prompts."""
        return AnswerMetric(self.pos, self.correct[idx], self.wrong[idx], self.kind, self.label)


def answer_metric(pairs: PromptPairs, digit: int, kind: MetricKind = "logit_diff") -> AnswerMetric:
    """Metric on answer digit `digit` (0 = least significant): clean digit vs corrupt digit."""
    spec = pairs.clean.spec
    if not 0 <= digit < spec.answer_width:
        raise ValueError(f"digit must be in 0..{spec.answer_width - 1} for {spec.name}, "
                         f"got {digit}")
    digit_ids = torch.tensor(DIGIT_IDS)
    return AnswerMetric(
        pos=spec.answer_positions()[digit] - 1,
        correct=digit_ids[pairs.clean.answer_digits[:, digit]],
        wrong=digit_ids[pairs.corrupt.answer_digits[:, digit]],
        kind=kind, label=f"{kind}(c{digit})",
    )


def digit_differs(pairs: PromptPairs, digit: int) -> Bool[Tensor, " batch"]:
    """Which pairs have different clean and corrupt answers at answer digit `digit`."""
    return pairs.clean.answer_digits[:, digit] != pairs.corrupt.answer_digits[:, digit]


def restrict_pairs(pairs: PromptPairs, keep: Bool[Tensor, " batch"]) -> PromptPairs:
    """The pairs where `keep` is True."""
    idx = keep.nonzero()[:, 0]
    if len(idx) == 0:
        raise ValueError(f"no pairs left after restricting {pairs.change} pairs")
    return PromptPairs(pairs.clean[idx], pairs.corrupt[idx], pairs.change)


def default_digit(pairs: PromptPairs) -> int:
    """The least significant answer digit that the corruption changes in most pairs."""
    share = (pairs.clean.answer_digits != pairs.corrupt.answer_digits).float().mean(0)
    return int((share >= 0.5).nonzero()[0, 0]) if (share >= 0.5).any() else int(share.argmax())


def normalized_effect(
    patched: Float[Tensor, ...], clean: float, corrupted: float
) -> Float[Tensor, ...]:
    """(patched - corrupted) / (clean - corrupted); refuses when clean ≈ corrupted."""
    gap = clean - corrupted
    if abs(gap) < MIN_GAP:
        raise ValueError(f"clean ({clean:.6g}) and corrupted ({corrupted:.6g}) metrics are "
                         "equal: this corruption does not move the metric, so effects cannot "
                         "be normalized; pick another answer digit or corruption")
    return (patched - corrupted) / gap

