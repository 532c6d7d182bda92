"""Attribution patching: the first-order (gradient × activation difference) estimate of every
cell of an exact patching grid, from one donor forward and one base forward + backward.

Denoising (base = corrupted run, donor = clean run):
    estimate(cell) = metric(corrupted) + Σ_cell (a_clean − a_corrupt) · ∂metric/∂a |corrupted
Noising mirrors it: gradients at the clean run, difference a_corrupt − a_clean. The sum runs
over the cell's elements: d_model for residual-type sites, d_head for z/q/k/v, key positions
for the attention pattern (its cells are (head, query position), as in exact patching), and
also every position for the all-positions head grids. The metric follows `metrics`
(logit difference = correct − wrong), so a positive effect moves the metric toward the
clean answer.

The result is a `patching.PatchResult` on the same grid as `sweep_patching` (values are
per-prompt estimates [*grid, batch]) with ``method="attribution"``; `compare_with_exact`
scores an estimate against the exact sweep. resid_mid is the true residual stream after
attention: its gradient is taken at the attention output (resid_mid = resid_pre + attn_out).
The whole batch goes through one backward pass: prompts do not interact, so each
prompt's gradient is its own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from arithinterp.analysis.patching import RESID_SITES, PatchResult, PatchSpec
from arithinterp.components import hook_name
from arithinterp.core.contrast import Contrast, Direction
from arithinterp.core.engine import run, run_with_gradients
from arithinterp.core.metrics import AnswerMetric, check_finite
from arithinterp.models import HookedModel, facts
from arithinterp.tasks import PromptPairs


def sweep_attribution(
    model: HookedModel, pairs: PromptPairs, spec: PatchSpec, metric: AnswerMetric,
    *, direction: Direction = "denoise",
) -> PatchResult:
    """Linear estimate of the patched metric for every cell of spec's grid (1 = clean, as
    in exact patching once normalized); the result's method is 'attribution'."""
    contrast = Contrast(pairs, metric, direction)
    contrast.check(model)
    if model.training:
        raise ValueError("model is in training mode: call model.eval() first, or dropout makes "
                         "the clean and corrupted runs incomparable")
    if torch.is_inference_mode_enabled():
        raise ValueError("sweep_attribution needs gradients: call it outside "
                         "torch.inference_mode()")
    base_tokens, donor_tokens = contrast.tokens(model)
    layers = spec.layer_list(facts(model).n_layers)
    mid = spec.site == "resid_mid"
    sites = ("resid_pre", "attn_out") if mid else (spec.site,)
    names = [hook_name(site, layer) for layer in layers for site in sites]

    base_acts, grads, base_score = run_with_gradients(model, base_tokens, names, metric)
    with torch.inference_mode():
        donor = run(model, donor_tokens, capture=names)
        donor_cache, donor_score = donor.acts, metric(donor.logits)

    def act(cache: dict[str, Tensor], layer: int) -> Tensor:
        return sum(cache[hook_name(site, layer)] for site in sites)

    with torch.no_grad():
        per_layer = [_cell_sums(spec, (act(donor_cache, L) - act(base_acts, L))
                                * grads[hook_name(sites[-1], L)]) for L in layers]
        values = torch.stack(per_layer) + base_score
    check_finite(values, f"the attribution estimates of {spec.site}")
    clean, corrupted = contrast.clean_and_corrupted(base_score, donor_score)
    return PatchResult(spec, direction, metric.label, values.cpu(),
                       clean.detach().cpu().clone(), corrupted.detach().cpu().clone(),
                       pairs.position_labels(), method="attribution")


def _cell_sums(spec: PatchSpec, prod: Tensor) -> Tensor:
    """Sum (difference × gradient) over each cell's elements: [*grid_without_layer, batch]."""
    if spec.site in RESID_SITES:  # [batch pos d_model]
        return prod.sum(-1).T
    if spec.site == "pattern":  # [batch head query key]: a cell is (head, query)
        per_query = prod.sum(-1)
        return per_query.permute(1, 2, 0) if spec.by_pos else per_query.sum(-1).T
    per_pos = prod.sum(-1)  # z/q/k/v: [batch pos head d_head] -> [batch pos head]
    return per_pos.permute(2, 1, 0) if spec.by_pos else per_pos.sum(1).T


# ---- estimate vs exact ---------------------------------------------------------------------
def compare_with_exact(estimate: PatchResult, exact: PatchResult, k: int = 10) -> dict:
    """How well attribution matches exact patching on the cell means of one grid.

    pearson / spearman: correlation of the cell means; top_k_overlap: share of exact's k
    largest |effect| cells among the estimate's k largest; max_abs_error: largest |estimate −
    exact| cell mean; peak_ratio: max |estimated effect| / max |exact effect|. Effect = cell
    mean − unpatched (base) metric mean.
    """
    if (estimate.spec, estimate.direction) != (exact.spec, exact.direction):
        raise ValueError(f"grids differ: estimate is {estimate.spec}/{estimate.direction}, "
                         f"exact is {exact.spec}/{exact.direction}")
    est, ex = estimate.mean().double(), exact.mean().double()
    if est.shape != ex.shape:
        raise ValueError(f"grid shapes differ: {tuple(est.shape)} vs {tuple(ex.shape)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    est, ex = est.flatten().numpy(), ex.flatten().numpy()
    est_effect = est - _base(estimate)
    ex_effect = ex - _base(exact)
    k = min(k, ex.size)
    top_est = set(np.argsort(-np.abs(est_effect), kind="stable")[:k].tolist())
    top_ex = set(np.argsort(-np.abs(ex_effect), kind="stable")[:k].tolist())
    peak_exact = float(np.abs(ex_effect).max())
    return {
        "n_cells": int(ex.size),
        "pearson": _pearson(est, ex),
        "spearman": _pearson(_ranks(est), _ranks(ex)),
        "k": k,
        "top_k_overlap": len(top_est & top_ex) / k,
        "max_abs_error": float(np.abs(est - ex).max()),
        "peak_ratio": float(np.abs(est_effect).max()) / peak_exact if peak_exact > 0 else
        float("nan"),
    }


def _base(result: PatchResult) -> float:
    """Mean metric of the unpatched run: corrupted when denoising, clean when noising."""
    return float((result.corrupted if result.direction == "denoise" else result.clean).mean())


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as scipy.stats.rankdata), for Spearman's correlation."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], x.size] - 1
    ranks = np.empty(x.size)
    ranks[order] = ((first + last) / 2.0)[group]
    return ranks
