"""The localization suite: every analysis of one model on one set of minimal pairs.

`compute_localization` builds the pairs, then runs exact activation patching (residual
stream, attention and MLP outputs by layer x position; heads by position and over all
positions; head q / k / v / pattern), attribution patching with its agreement with exact
patching, path patching (every sender to the logits, and to the q / k / v of the most
important last-layer head), direct logit attribution, the logit lens, the operand-digit
attention table, a component ranking and a knockout check of the top components. It
returns tables and tensors; the caller decides where they go.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.analysis.attention import compute_operand_attention
from arithinterp.analysis.attribution import compute_dla, compute_logit_lens
from arithinterp.analysis.attribution_patching import compare_with_exact, sweep_attribution
from arithinterp.analysis.localize import compute_knockout, rank_components, select_components
from arithinterp.analysis.metrics import (
    METRIC_KINDS,
    MetricKind,
    answer_metric,
    default_digit,
    digit_differs,
    restrict_pairs,
)
from arithinterp.analysis.patching import PatchSpec, sweep_patching
from arithinterp.analysis.paths import sweep_paths
from arithinterp.cache import act_names, run_cached
from arithinterp.models import HookedModel
from arithinterp.tasks import PromptPairs, TaskSpec, make_carry_pairs, make_digit_pairs, make_splits

BOTH = ("denoise", "noise")
EXACT_GRIDS = [
    (PatchSpec("resid_pre"), BOTH), (PatchSpec("attn_out"), ("denoise",)),
    (PatchSpec("mlp_out"), ("denoise",)), (PatchSpec("z"), ("denoise",)),
    (PatchSpec("z", by_pos=False), BOTH),
] + [(PatchSpec(site, by_pos=False), ("denoise",)) for site in ("q", "k", "v", "pattern")]
ATTRIBUTION_GRIDS = [PatchSpec("z"), PatchSpec("resid_pre"), PatchSpec("z", by_pos=False)]


@dataclass(frozen=True)
class LocalizeConfig:
    """Which minimal pairs, which metric, and how large each analysis is."""

    n_pairs: int = 256
    corrupt: Literal["digit", "carry"] = "digit"
    operand: Literal["a", "b"] = "a"  # digit corruption: which operand
    digit: int = 1  # digit corruption: which digit of it (0 = least significant)
    position: int = 1  # carry corruption: the answer position whose carry flips
    answer_digit: int | None = None  # metric's answer digit; None: the one the pairs change
    metric: MetricKind = "logit_diff"
    n_eval: int = 256  # held-out prompts for DLA, logit lens, attention and knockout
    top_k: int = 3
    knockout: Literal["zero", "mean", "resample"] = "mean"
    n_random: int = 5
    seed: int = 0
    save_cache: bool = True

    def __post_init__(self) -> None:
        for name in ("n_pairs", "n_eval", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_random < 0:
            raise ValueError(f"n_random must be >= 0, got {self.n_random}")
        if self.corrupt not in ("digit", "carry"):
            raise ValueError(f"corrupt must be 'digit' or 'carry', got {self.corrupt!r}")
        if self.metric not in METRIC_KINDS:
            raise ValueError(f"metric must be one of {METRIC_KINDS}, got {self.metric!r}")


@dataclass(frozen=True)
class Localization:
    """Tables (tidy DataFrames) and tensors of one localization run, keyed by artifact name."""

    tables: dict[str, pd.DataFrame]
    tensors: dict[str, Tensor]
    summary: dict = field(default_factory=dict)


def make_pairs(task: TaskSpec, config: LocalizeConfig) -> tuple[PromptPairs, int]:
    """The minimal pairs and the answer digit the metric reads (pairs that leave that digit
    unchanged are dropped: their logit difference is 0 whatever is patched)."""
    if config.corrupt == "digit":
        pairs = make_digit_pairs(task, config.n_pairs, operand=config.operand, digit=config.digit,
                                 seed=config.seed)
    else:
        pairs = make_carry_pairs(task, config.n_pairs, position=config.position,
                                 seed=config.seed)
    digit = default_digit(pairs) if config.answer_digit is None else config.answer_digit
    if not 0 <= digit < task.answer_width:
        raise ValueError(f"answer_digit must be in 0..{task.answer_width - 1}, got {digit}")
    return restrict_pairs(pairs, digit_differs(pairs, digit)), digit


def compute_localization(model: HookedModel, task: TaskSpec, config: LocalizeConfig, *,
                         progress: bool = True) -> Localization:
    """Run the whole suite (see the module docstring) on `model`."""
    pairs, digit = make_pairs(task, config)
    metric = answer_metric(pairs, digit, config.metric)
    eval_data = make_splits(task, 0, config.n_eval, seed=config.seed + 1)[1]
    steps = tqdm(total=len(EXACT_GRIDS) + 6, desc="localize", disable=not progress, unit="step")
    tables: dict[str, pd.DataFrame] = {}
    tensors: dict[str, Tensor] = {}

    exact, frames = {}, []
    for spec, directions in EXACT_GRIDS:
        if spec.site == "mlp_out" and model.cfg.attn_only:
            continue
        for direction in directions:
            result = sweep_patching(model, pairs, spec, metric, direction=direction)
            key = f"{spec.site}_{'pos' if spec.by_pos else 'all'}_{direction}"
            exact[key] = result
            tensors[f"patching/{key}"] = result.values
            frames.append(result.to_frame())
        steps.update()
    tables["patching"] = pd.concat(frames, ignore_index=True)

    attr_frames, agreement = [], []
    for spec in ATTRIBUTION_GRIDS:
        estimate = sweep_attribution(model, pairs, spec, metric)
        attr_frames.append(estimate.to_frame())
        key = f"{spec.site}_{'pos' if spec.by_pos else 'all'}_denoise"
        agreement.append({"grid": key, **compare_with_exact(estimate, exact[key])})
    tables["attribution"] = pd.concat(attr_frames, ignore_index=True)
    tables["attribution_vs_exact"] = pd.DataFrame(agreement)
    steps.update()

    ranked = rank_components(pd.concat(
        [exact["z_all_denoise"].to_frame()]
        + ([exact["mlp_out_pos_denoise"].to_frame()] if "mlp_out_pos_denoise" in exact else []),
        ignore_index=True))
    tables["ranking"] = ranked
    path_frames = [sweep_paths(model, pairs, metric)]
    last = model.cfg.n_layers - 1
    top_last = ranked[(ranked["kind"] == "head") & (ranked["layer"] == last)]
    if last > 0 and len(top_last):
        receiver = top_last.iloc[0]["component"]
        path_frames += [sweep_paths(model, pairs, metric, receiver=receiver, receiver_input=inp)
                        for inp in ("q", "k", "v")]
    tables["paths"] = pd.concat(path_frames, ignore_index=True)
    steps.update()

    tables["dla"] = compute_dla(model, pairs.clean, metric) if config.metric == "logit_diff" \
        else pd.DataFrame()
    steps.update()
    tables["logit_lens"] = compute_logit_lens(model, eval_data)
    tables["operand_attention"] = compute_operand_attention(model, eval_data)
    steps.update()

    heads = ranked[ranked["kind"] == "head"]
    selected = select_components(heads, top_k=min(config.top_k, len(heads)))
    n_pool = model.cfg.n_layers * model.cfg.n_heads - len(selected)
    tables["knockout"] = compute_knockout(model, eval_data, selected, method=config.knockout,
                                          n_random=min(config.n_random, n_pool), seed=config.seed)
    steps.update()
    if config.save_cache:
        names = act_names(model, ["z", "resid_post"])
        tensors.update({f"cache/{k}": v for k, v in
                        run_cached(model, pairs.clean.tokens, names).items()})
    steps.update()
    steps.close()

    with torch.inference_mode():
        device = next(model.parameters()).device
        clean = metric(model(pairs.clean.tokens.to(device))).mean().item()
        corrupted = metric(model(pairs.corrupt.tokens.to(device))).mean().item()
    summary = {"config": asdict(config), "task": task.name, "change": pairs.change,
               "answer_digit": digit, "metric": metric.label, "metric_pos": metric.pos,
               "n_pairs": len(pairs), "clean_metric": clean, "corrupted_metric": corrupted,
               "selected": selected, "position_labels": task.position_labels()}
    return Localization(tables, tensors, summary)
