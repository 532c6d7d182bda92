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

from arithinterp.fields import check_choice
from arithinterp.tasks import PromptPairs

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
        check_choice("kind", self.kind, METRIC_KINDS)

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

    def check(self, n_prompts: int, n_pos: int, d_vocab: int) -> None:
        """Refuse a metric that does not fit the prompts and the model, naming what is off."""
        if isinstance(self.pos, bool) or not isinstance(self.pos, int) or \
                not 0 <= self.pos < n_pos:
            raise ValueError(f"metric position must be in 0..{n_pos - 1} (the prompts have "
                             f"{n_pos} tokens), got {self.pos!r}")
        for name in ("correct", "wrong"):
            ids = getattr(self, name)
            if ids.shape != (n_prompts,):
                raise ValueError(f"metric has {tuple(ids.shape)} {name} token ids for "
                                 f"{n_prompts} prompts: one per prompt is needed")
            if len(ids) and not (int(ids.min()) >= 0 and int(ids.max()) < d_vocab):
                raise ValueError(f"metric {name} token ids must be in 0..{d_vocab - 1}, got "
                                 f"{int(ids.min())}..{int(ids.max())}")


def answer_metric(pairs: PromptPairs, digit: int, kind: MetricKind = "logit_diff") -> AnswerMetric:
    """Metric on answer digit `digit` (0 = least significant): the clean answer's token vs
    the corrupt answer's token at that digit (whatever the vocabulary)."""
    spec = pairs.clean.spec
    if not 0 <= digit < spec.answer_width:
        raise ValueError(f"digit must be in 0..{spec.answer_width - 1} for {spec.name}, "
                         f"got {digit}")
    pos = spec.answer_positions()[digit]
    return AnswerMetric(pos=pos - 1, correct=pairs.clean.tokens[:, pos].clone(),
                        wrong=pairs.corrupt.tokens[:, pos].clone(), kind=kind,
                        label=f"{kind}(c{digit})")


def check_finite(values: Tensor, what: str) -> Tensor:
    """Refuse NaN or infinite metric values, naming how many prompts and which."""
    bad = ~torch.isfinite(values)
    if bad.any():
        per_prompt = bad.reshape(-1, bad.shape[-1]).any(0) if bad.ndim > 1 else bad
        idx = per_prompt.nonzero()[:, 0].tolist()
        raise ValueError(f"the metric is NaN or infinite for {len(idx)} of {len(per_prompt)} "
                         f"prompts in {what} (prompts {idx[:10]}{'...' if len(idx) > 10 else ''})"
                         "; check the model's weights and the metric")
    return values


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


def normalized_per_prompt(
    patched: Float[Tensor, "*grid batch"], clean: Float[Tensor, " batch"],
    corrupted: Float[Tensor, " batch"],
) -> Float[Tensor, "*grid batch"]:
    """Each prompt normalized by its own baselines: (patched_i - corrupted_i) / (clean_i -
    corrupted_i); NaN for prompts whose corruption does not move the metric (|gap| < MIN_GAP)."""
    gap = clean - corrupted
    ok = gap.abs() >= MIN_GAP
    return torch.where(ok, (patched - corrupted) / torch.where(ok, gap, 1.0), torch.nan)


def directed_effect(normalized, direction: str):
    """A patch's effect on one scale for both directions: 0 = the patch changes nothing, 1 =
    it moves the metric the whole way. Denoising restores (effect = normalized: 1 = clean
    recovered); noising destroys (effect = 1 - normalized: 1 = clean fully lost). Works on
    tensors, arrays and Series alike."""
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    return normalized if direction == "denoise" else 1 - normalized


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

