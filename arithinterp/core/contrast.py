"""A contrast: prompt pairs, the metric that scores them and the direction of the experiment,
resolved into the base run (the one intervened on) and the donor run (the one activations come
from), with their baselines — the preamble every patching-type method shares.

Denoising patches clean activations into the corrupted run (base = corrupted, donor = clean);
noising patches corrupted activations into the clean run (base = clean, donor = corrupted).
`engine_weights` decides between the hook engine (any model) and the fast engine
(`core.fast`: models built here with learned positions, Llama-family LLMs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.core import fast as fw
from arithinterp.core.metrics import AnswerMetric, check_finite
from arithinterp.models import HookedModel, device_of, facts
from arithinterp.tasks import PromptPairs
from arithinterp.weights import NativeWeights, fast_engine_gap, native_weights

Direction = Literal["denoise", "noise"]
DIRECTIONS: tuple[str, ...] = ("denoise", "noise")
Engine = Literal["auto", "fast", "hooks"]
ENGINES: tuple[str, ...] = ("auto", "fast", "hooks")


@dataclass(frozen=True)
class Contrast:
    """Pairs, metric and direction of one experiment."""

    pairs: PromptPairs
    metric: AnswerMetric
    direction: str = "denoise"  # a Direction; `check` refuses others by name

    def check(self, model: HookedModel) -> None:
        """Refuse pairs, metric and direction that do not fit each other or the model,
        naming what is off."""
        clean, corrupt = self.pairs.clean.tokens, self.pairs.corrupt.tokens
        if clean.shape != corrupt.shape:
            raise ValueError(f"clean and corrupt prompts must have the same shape: clean is "
                             f"{tuple(clean.shape)} (prompts x tokens), corrupt "
                             f"{tuple(corrupt.shape)}")
        f = facts(model)
        if clean.shape[1] > f.n_ctx:
            raise ValueError(f"prompts have {clean.shape[1]} tokens; the model takes {f.n_ctx}")
        self.metric.check(clean.shape[0], clean.shape[1], f.d_vocab)
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'denoise' or 'noise', got {self.direction!r}")

    @property
    def denoising(self) -> bool:
        return self.direction == "denoise"

    def base_and_donor(self, clean, corrupt):
        """(base, donor) of any clean/corrupt pair of things (tokens, traces, caches)."""
        return (corrupt, clean) if self.denoising else (clean, corrupt)

    def clean_and_corrupted(self, base, donor):
        """The inverse of `base_and_donor`: (clean, corrupted) from (base, donor)."""
        return (donor, base) if self.denoising else (base, donor)

    def tokens(self, model: HookedModel
               ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """(base, donor) tokens on the model's device."""
        device = device_of(model)
        return self.base_and_donor(self.pairs.clean.tokens.to(device),
                                   self.pairs.corrupt.tokens.to(device))

    @torch.inference_mode()
    def baselines(self, model: HookedModel
                  ) -> tuple[Float[Tensor, " batch"], Float[Tensor, " batch"]]:
        """The metric of the unpatched clean and corrupted runs (checked finite)."""
        device = device_of(model)
        clean = self.metric(model(self.pairs.clean.tokens.to(device)))
        corrupted = self.metric(model(self.pairs.corrupt.tokens.to(device)))
        check_finite(torch.stack([clean, corrupted]), "the unpatched runs")
        return clean, corrupted

    def traces(self, weights: NativeWeights, device: torch.device
               ) -> tuple[fw.Trace, fw.Trace, Tensor, Tensor]:
        """The fast engine's full traces of the (base, donor) runs up to the metric's
        position (later positions cannot influence it), and the (clean, corrupted)
        baselines."""
        end = self.metric.pos + 1
        clean = fw.run_trace(weights, self.pairs.clean.tokens.to(device)[:, :end])
        corrupt = fw.run_trace(weights, self.pairs.corrupt.tokens.to(device)[:, :end])
        scores = torch.stack([self.metric.score(clean.logits), self.metric.score(corrupt.logits)])
        check_finite(scores, "the unpatched runs")
        base, donor = self.base_and_donor(clean, corrupt)
        return base, donor, scores[0], scores[1]


def engine_weights(model: HookedModel, engine: str) -> NativeWeights | None:
    """The fast engine's weights where `engine` asks for it and it covers the model ('auto'
    falls back to hooks, 'fast' refuses naming why), None for the hook engine."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "hooks":
        return None
    if engine == "fast" and (gap := fast_engine_gap(model)) is not None:
        raise ValueError(f"the fast engine covers models built here with learned positions "
                         f"and Llama-family LLMs, not {gap}; use engine='auto' or 'hooks'")
    return native_weights(model)
