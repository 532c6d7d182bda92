"""Component ranking and selection from patching tables, and knockout validation.

Components are named as the rest of the package prints them and as selective fine-tuning
consumes them: ``L1H3`` (head 3 of layer 1), ``L0.mlp`` (an MLP layer) and ``L0.attn`` (a
whole attention layer). `rank_components` turns a tidy patching table into one row per
component; `select_components` picks the top ones; `compute_knockout` checks a selection
causally: ablating it together should hurt the task more than ablating as many random
components of the same kinds.

Ablations replace an activation: a head's ``blocks.L.attn.hook_z[:, :, h]``, an MLP's
``blocks.L.hook_mlp_out``, an attention layer's ``blocks.L.hook_attn_out``. Replacements
come from unablated runs: zeros ("zero"), the per-position mean over a reference dataset
("mean"), or the activations of a seeded permutation of the reference prompts ("resample").
All conditions of one call run in one batched forward pass (conditions stacked on the
batch axis), through ``model.hooks``.

Sign conventions: margin = logit(correct digit) - max logit(any other token) at the
position predicting that digit (> 0 exactly when the argmax is right); metric_drop =
metric(no ablation) - metric(condition), so a harmful ablation has a positive drop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from arithinterp.components import (
    KIND_ORDER,
    Component,
    all_components,
    check_component,
    hook_name,
    site_info,
)
from arithinterp.core.engine import run
from arithinterp.core.interventions import Intervention, ReplaceWhere
from arithinterp.evaluate import score_answers, score_first_token
from arithinterp.fields import check_int
from arithinterp.models import HookedModel, device_of, facts
from arithinterp.tasks import Dataset, Prompts

Method = Literal["zero", "mean", "resample"]
METHODS: tuple[str, ...] = ("zero", "mean", "resample")
MAX_LOGITS = 1 << 26  # logits elements per batched forward (256 MB in float32)
MAX_REDRAWS = 1_000


# ---- ranking and selection ----------------------------------------------------------------
def rank_components(table: pd.DataFrame, *, value: str = "normalized") -> pd.DataFrame:
    """One row per component, by |effect| descending (rank 1 = largest).

    A component's effect is its signed `value` at the row (position) where |value| is
    largest: a component that matters at one position is not diluted by the many positions
    where it does nothing, and the score does not grow with sequence length (a sum would).
    Tables without positions (all-position grids) have one row per component already;
    rows whose value is NaN are skipped. Columns: component, kind, layer, head, pos (where
    the max is; None without positions), effect, abs_effect, rank.
    """
    for col in ("component", value):
        if col not in table.columns:
            raise ValueError(f"table has no {col!r} column (columns: {list(table.columns)})")
    if table.empty:
        raise ValueError("table is empty: nothing to rank")
    parsed = {name: Component.parse(name) for name in table["component"].unique()}
    work = table.reset_index(drop=True)
    work = work.assign(abs_effect=work[value].abs()).dropna(subset=["abs_effect"])
    if work.empty:
        raise ValueError(f"every {value!r} value is NaN: nothing to rank")
    best = work.loc[work.groupby("component", sort=False)["abs_effect"].idxmax()]
    pos = best["pos"] if "pos" in best.columns else pd.Series(None, index=best.index)
    comps = [parsed[c] for c in best["component"]]
    out = pd.DataFrame({
        "component": [c.name for c in comps],
        "kind": [c.kind for c in comps],
        "layer": [c.layer for c in comps],
        "head": pd.array([c.head for c in comps], dtype="Int64"),
        "pos": [None if pd.isna(p) else int(p) for p in pos],
        "effect": best[value].astype(float).to_numpy(),
        "abs_effect": best["abs_effect"].astype(float).to_numpy(),
    })
    # ties: forward order (layer, then attn < heads < mlp), so ranks are deterministic
    out["_order"] = out["kind"].map(KIND_ORDER)
    out = out.sort_values(["layer", "_order", "head"], na_position="first", kind="stable")
    out = out.sort_values("abs_effect", ascending=False, kind="stable").drop(columns="_order")
    out["rank"] = range(1, len(out) + 1)
    return out.reset_index(drop=True)


def select_components(ranked: pd.DataFrame, *, top_k: int | None = None,
                      threshold: float | None = None) -> list[Component]:
    """Components by rank: the top_k first, or all with |effect| >= threshold."""
    if (top_k is None) == (threshold is None):
        raise ValueError("give exactly one of top_k and threshold, got "
                         f"top_k={top_k!r}, threshold={threshold!r}")
    for col in ("component", "abs_effect", "rank"):
        if col not in ranked.columns:
            raise ValueError(f"ranked has no {col!r} column; pass the output of rank_components")
    ordered = ranked.sort_values("rank", kind="stable")
    if top_k is not None:
        check_int("top_k", top_k, min=1)
        names = ordered["component"].head(top_k).tolist()
    else:
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0 (it bounds |effect|), got {threshold!r}")
        names = ordered.loc[ordered["abs_effect"] >= threshold, "component"].tolist()
    return [Component.parse(n) for n in names]


# ---- knockout -----------------------------------------------------------------------------
def _random_pools(model: HookedModel, components: Sequence[Component | str]):
    """Per kind of the selection: the components outside it, and how many a draw takes."""
    f = facts(model)
    chosen = [check_component(f, c) for c in components]
    kinds = sorted({c.kind for c in chosen}, key=KIND_ORDER.get)
    pools = {k: [c for c in all_components(f, k) if c not in chosen] for k in kinds}
    need = {k: sum(c.kind == k for c in chosen) for k in kinds}
    return kinds, pools, need


def max_random_sets(model: HookedModel, components: Sequence[Component | str]) -> int:
    """How many distinct random sets `draw_random_components` can draw for `components`."""
    kinds, pools, need = _random_pools(model, components)
    return math.prod(math.comb(len(pools[k]), need[k]) for k in kinds)


def draw_random_components(model: HookedModel, components: Sequence[Component | str], n: int,
                           gen: torch.Generator) -> list[list[Component]]:
    """n distinct draws, each as many components of each kind as `components` has, taken
    uniformly from the model's components of that kind that are not in `components`."""
    kinds, pools, need = _random_pools(model, components)
    for k in kinds:
        if n and len(pools[k]) < need[k]:
            raise ValueError(f"cannot draw {need[k]} random {k} components outside the "
                             f"selection: only {len(pools[k])} are left; use n_random=0")
    possible = max_random_sets(model, components)
    if n > possible:
        raise ValueError(f"only {possible} distinct random sets exist outside the selection, "
                         f"{n} were asked for; lower n_random")
    draws: list[list[Component]] = []
    seen: set[frozenset[Component]] = set()
    for _ in range(n * MAX_REDRAWS):
        if len(draws) == n:
            break
        draw: list[Component] = []
        for k in kinds:
            idx = torch.randperm(len(pools[k]), generator=gen)[: need[k]].tolist()
            draw.extend(pools[k][i] for i in sorted(idx))
        if frozenset(draw) not in seen:  # distinct sets: a repeat says nothing new
            seen.add(frozenset(draw))
            draws.append(draw)
    return draws


def _replacements(model: HookedModel, names: list[str], method: Method, reference: Prompts,
                  donors: Tensor, device: torch.device) -> dict[str, Tensor]:
    """Per hook: zeros [1 pos ...], the reference mean [1 pos ...] or a permutation of the
    reference activations [batch pos ...], all from unablated runs."""
    with torch.inference_mode():
        cache = run(model, reference.tokens.to(device), capture=names).acts
    if method == "zero":
        return {n: torch.zeros_like(cache[n][:1]) for n in names}
    if method == "mean":
        return {n: cache[n].mean(0, keepdim=True) for n in names}
    return {n: cache[n][donors.to(device)] for n in names}


def _check_inputs(model: HookedModel, data: Prompts, components: Sequence[Component | str],
                  method: str, reference: Prompts | None) -> Prompts:
    """Validate a knockout's inputs; return the reference dataset (default: data)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    comps = [check_component(facts(model), c) for c in components]
    if len(set(comps)) != len(comps):
        raise ValueError(f"components has duplicates: {[c.name for c in comps]}")
    reference = data if reference is None else reference
    if reference.tokens.shape[1] != data.tokens.shape[1]:
        raise ValueError(f"reference prompts have {reference.tokens.shape[1]} positions, data "
                         f"prompts {data.tokens.shape[1]}: ablations replace per position")
    if method == "resample" and len(reference) < len(data):
        raise ValueError(f"resample ablation permutes the reference prompts: reference has "
                         f"{len(reference)}, fewer than data's {len(data)}")
    return reference


def _donors(data: Prompts, reference: Prompts, seed: int) -> tuple[torch.Generator, Tensor]:
    """A generator seeded `seed` and the resample donors, always its first draw (so the same
    seed gives the same donors and the same random components whatever the method)."""
    gen = torch.Generator().manual_seed(seed)
    return gen, torch.randperm(len(reference), generator=gen)[: len(data)]


def _plan(model: HookedModel, conditions: list[list[Component]], method: Method,
          reference: Prompts, donors: Tensor
          ) -> tuple[dict[tuple[str, int], Tensor], dict[str, Tensor]]:
    """Per ablated (site, layer): which units each condition replaces ([cond] or
    [cond head]); per hook: with what."""
    device = device_of(model)
    masks: dict[tuple[str, int], Tensor] = {}
    for c, comps in enumerate(conditions):
        for comp in comps:
            target = (comp.site, comp.layer)
            if target not in masks:
                shape = ((len(conditions), facts(model).n_heads) if comp.kind == "head"
                         else (len(conditions),))
                masks[target] = torch.zeros(shape, dtype=torch.bool, device=device)
            masks[target][(c, comp.head) if comp.kind == "head" else c] = True
    names = sorted({hook_name(*t) for t in masks})
    return masks, _replacements(model, names, method, reference, donors, device)


def _run_conditions(model: HookedModel, tokens: Tensor, masks: dict[tuple[str, int], Tensor],
                    replacement: dict[str, Tensor], lo: int, hi: int) -> Tensor:
    """Logits [(hi-lo)*batch pos d_vocab] of conditions lo..hi-1, stacked on the batch axis:
    in each condition's block of the batch, the masked units take the replacement."""
    batch, n_cond = tokens.shape[0], hi - lo
    ablations = []
    for (site, layer), mask in masks.items():
        value = replacement[hook_name(site, layer)]  # [batch|1 pos ...]
        n_axes = len(site_info(site).axes)
        where = mask[lo:hi].repeat_interleave(batch, 0)  # [cond*batch] or [cond*batch head]
        where = where.reshape(where.shape[0], 1, *where.shape[1:])
        where = where.reshape(*where.shape, *([1] * (n_axes - where.ndim)))
        if value.shape[0] > 1:
            value = value.repeat(n_cond, *([1] * (value.ndim - 1)))
        ablations.append(Intervention(site, ReplaceWhere(value, where), layer))
    with torch.inference_mode():
        return run(model, tokens.repeat(n_cond, 1), ablations).logits


def run_with_ablation(
    model: HookedModel, data: Prompts, components: Sequence[Component | str], *,
    method: Method = "mean", reference: Prompts | None = None, seed: int = 0,
) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of `data` with `components` ablated together, as in `compute_knockout`
    (same replacements; the same seed gives the same resample donors)."""
    reference = _check_inputs(model, data, components, method, reference)
    _, donors = _donors(data, reference, seed)
    comps = [Component.parse(c) for c in components]
    masks, replacement = _plan(model, [comps], method, reference, donors)
    tokens = data.tokens.to(device_of(model))
    return _run_conditions(model, tokens, masks, replacement, 0, 1)


def compute_knockout(
    model: HookedModel, data: Prompts, components: Sequence[Component | str], *,
    method: Method = "mean", reference: Prompts | None = None, n_random: int = 5, seed: int = 0,
) -> pd.DataFrame:
    """Accuracy and margin on `data` with `components` ablated together, against `n_random`
    draws of as many random components of the same kinds, and no ablation.

    One row per condition (`none`, `selected`, `random_0`, ...): exact_match (every answer
    digit, and the sign of signed tasks, argmax-right at its predicting position given the
    true prefix; for plain and reversed formats this equals the greedy exact match of
    `evaluate`, since the first teacher-forced mistake is the first greedy one), acc_c<k>
    per answer digit (also given the true prefix, so past the first digit it can differ
    from greedy per-digit accuracy), metric = mean margin logit(correct) - max logit(other)
    over prompts and answer digits, metric_drop = metric(none) - metric (positive: the
    ablation hurts). Replacements come from unablated runs over `reference` (default:
    `data`): zeros ("zero"), its per-position mean ("mean"), or the activations of a seeded
    permutation of its prompts ("resample"; needs len(reference) >= len(data)). Random
    components are drawn from those of each kind outside the selection, as distinct sets.
    """
    if not components:
        raise ValueError("components is empty: nothing to knock out")
    if n_random < 0:
        raise ValueError(f"n_random must be >= 0, got {n_random}")
    reference = _check_inputs(model, data, components, method, reference)
    gen, donors = _donors(data, reference, seed)
    conditions = {"none": [], "selected": [Component.parse(c) for c in components]}
    for i, draw in enumerate(draw_random_components(model, components, n_random, gen)):
        conditions[f"random_{i}"] = draw
    masks, replacement = _plan(model, list(conditions.values()), method, reference, donors)

    tokens = data.tokens.to(device_of(model))
    batch, n_pos = tokens.shape
    per_chunk = max(1, MAX_LOGITS // (batch * n_pos * facts(model).d_vocab))
    exact, digit_ok, margin = [], [], []
    for lo in range(0, len(conditions), per_chunk):
        hi = min(lo + per_chunk, len(conditions))
        logits = _run_conditions(model, tokens, masks, replacement, lo, hi)
        e, d, g = (score_answers(data.spec, logits, tokens.repeat(hi - lo, 1))
                   if isinstance(data, Dataset) else
                   score_first_token(logits, data.target.repeat(hi - lo)))
        exact.append(e.view(hi - lo, batch))
        digit_ok.append(d.view(hi - lo, batch, -1))
        margin.append(g.view(hi - lo, batch, -1))
    exact_t, digit_t, margin_t = (torch.cat(x).cpu() for x in (exact, digit_ok, margin))
    metric = margin_t.double().mean((1, 2))
    rows = []
    for c, (cond, names) in enumerate(conditions.items()):
        row = {"condition": cond, "components": ",".join(c.name for c in names),
               "n_components": len(names),
               "method": method, "exact_match": float(exact_t[c].double().mean())}
        for k in range(digit_t.shape[2]):
            row[f"acc_c{k}"] = float(digit_t[c, :, k].double().mean())
        row["metric"] = float(metric[c])
        row["metric_drop"] = float(metric[0] - metric[c])
        rows.append(row)
    return pd.DataFrame(rows)
