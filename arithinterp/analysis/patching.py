"""Exact activation patching over whole grids, without one forward pass per grid cell.

Denoising copies each clean activation into the corrupted run; noising copies corrupted
activations into the clean run. A cell's patch can only change the network from its layer
on, at positions from the first patched one up to the metric's position, so the fast
engine resumes the forward pass there (`forward.run_suffix`) for all the heads of a
(layer, position) group at once. It covers the models `weights.native_weights` reads: those
built here with learned positions, and Llama-family LLMs (rotary, RMSNorm, gated MLP,
grouped-query attention). Other models go through the hook engine: one hooked forward pass
per cell. Under grouped-query attention k and v belong to key/value heads shared by several
query heads, so their per-head grids are refused.
TransformerLens's own patching functions (`reference_patching`) are the oracle the tests
hold both engines to.

Residual-stream patches replace the residual stream itself. In TransformerLens 4's bridge,
``blocks.L.hook_resid_mid`` is an alias of ``ln2.hook_in``: a value returned there reaches
the MLP's input only, while the skip connection keeps the unpatched stream. The hook engine
therefore patches resid_mid as an additive change of ``hook_attn_out``.

Grids (axes in this order): resid_pre / resid_mid / resid_post / attn_out / mlp_out:
(layer, pos); z / q / k / v / pattern with by_pos: (layer, head, pos) where pos is the
patched position (the destination position for pattern); without: (layer, head).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.components import Component, hook_name
from arithinterp.core import fast as fw
from arithinterp.core.contrast import Contrast, Direction, Engine, engine_weights
from arithinterp.core.engine import activation_cache, capture_activations, run
from arithinterp.core.interventions import Intervention, patch
from arithinterp.core.metrics import (
    AnswerMetric,
    check_finite,
    directed_effect,
    normalized_effect,
    normalized_per_prompt,
)
from arithinterp.fields import check_choice, is_int
from arithinterp.models import HookedModel, device_of, facts
from arithinterp.tasks import PromptPairs
from arithinterp.weights import NativeWeights

Site = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out",
               "z", "q", "k", "v", "pattern"]
Method = Literal["exact", "attribution"]
RESID_SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_SITES = ("z", "q", "k", "v", "pattern")
MAX_ROWS = 1 << 16  # variant x prompt x position rows per recomputation chunk


@dataclass(frozen=True)
class PatchSpec:
    """Which activations to patch: one site, per position or all positions at once, in every
    layer or in the given ones (a 30-layer LLM's last few, say)."""

    site: Site
    by_pos: bool = True  # head sites only; residual-type sites are always by position
    layers: tuple[int, ...] | None = None  # None: every layer; else these, ascending

    def __post_init__(self) -> None:
        check_choice("site", self.site, RESID_SITES + HEAD_SITES)
        if self.site in RESID_SITES and not self.by_pos:
            raise ValueError(f"site {self.site!r} is patched by position (by_pos=True)")
        if self.layers is not None:
            ok = all(is_int(x) and x >= 0 for x in self.layers)
            if not self.layers or not ok or list(self.layers) != sorted(set(self.layers)):
                raise ValueError(f"layers must be None or distinct ascending layer indices >= 0, "
                                 f"got {self.layers!r}")

    def layer_list(self, n_layers: int) -> list[int]:
        """The layers of the grid's first axis, checked against a model of n_layers."""
        if self.layers is None:
            return list(range(n_layers))
        if self.layers[-1] >= n_layers:
            raise ValueError(f"layers must be in 0..{n_layers - 1}, got {list(self.layers)}")
        return list(self.layers)

    @property
    def axes(self) -> tuple[str, ...]:
        if self.site in RESID_SITES:
            return ("layer", "pos")
        return ("layer", "head", "pos") if self.by_pos else ("layer", "head")


def component_of(site: str, layer: int, head: int | None = None) -> Component:
    """The component a grid cell patches: a head, an attention or MLP layer, or the residual
    stream."""
    if head is not None:
        return Component("head", layer, head)
    kind = {"attn_out": "attn", "mlp_out": "mlp"}.get(site, "resid")
    return Component(kind, layer)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PatchResult:
    """Per-prompt metric of every patched run, with the unpatched baselines and labels."""

    spec: PatchSpec
    direction: Direction
    metric: str
    values: Float[Tensor, ...]  # [*grid, batch]
    clean: Float[Tensor, " batch"]
    corrupted: Float[Tensor, " batch"]
    pos_labels: list[str]
    method: Method = "exact"

    def mean(self) -> Float[Tensor, ...]:
        """Mean patched metric per grid cell."""
        return self.values.mean(-1)

    def normalized(self) -> Float[Tensor, ...]:
        """Per cell: (patched - corrupted) / (clean - corrupted) on means; 1 = clean."""
        return normalized_effect(self.mean(), float(self.clean.mean()),
                                 float(self.corrupted.mean()))

    def normalized_per_prompt(self) -> Float[Tensor, ...]:
        """[*grid, batch]: each prompt normalized by its own clean and corrupted metric (NaN
        where its corruption does not move the metric)."""
        return normalized_per_prompt(self.values, self.clean, self.corrupted)

    def to_frame(self, *, allow_unnormalized: bool = False) -> pd.DataFrame:
        """One row per grid cell: layer, head, pos, token, component, value, normalized,
        effect (`directed_effect`: normalized when denoising, 1 - normalized when noising).

        When the corruption does not move the metric, normalizing raises, unless
        `allow_unnormalized` (then the normalized column is NaN).
        """
        mean = self.mean()
        try:
            norm = self.normalized()
        except ValueError:
            if not allow_unnormalized:
                raise
            norm = torch.full_like(mean, torch.nan)
        effect = directed_effect(norm, self.direction)
        rows = []
        layers = list(self.spec.layers or range(mean.shape[0]))
        for idx in torch.cartesian_prod(*(torch.arange(n) for n in mean.shape)).reshape(
                -1, mean.ndim).tolist():
            cell = dict(zip(self.spec.axes, idx, strict=True))
            layer, head, pos = layers[cell["layer"]], cell.get("head"), cell.get("pos")
            rows.append({
                "method": self.method, "site": self.spec.site, "by_pos": self.spec.by_pos,
                "direction": self.direction, "layer": layer, "head": head, "pos": pos,
                "token": self.pos_labels[pos] if pos is not None else None,
                "component": component_of(self.spec.site, layer, head).name,
                "value": float(mean[tuple(idx)]), "normalized": float(norm[tuple(idx)]),
                "effect": float(effect[tuple(idx)]), "metric": self.metric,
            })
        return pd.DataFrame(rows)


CELL_KEYS = ("site", "by_pos", "direction", "layer", "head", "pos")


def patching_difference(a: pd.DataFrame, b: pd.DataFrame, *, value: str = "effect"
                        ) -> pd.DataFrame:
    """Two patching tables (two runs, or two experiments) cell by cell: the cells both hold,
    with `value` of each (value_a, value_b) and difference = value_a - value_b, plus a's
    token and component. Refuses tables that share no cell, naming why."""
    for name, t in (("a", a), ("b", b)):
        missing = [c for c in (*CELL_KEYS, value) if c not in t.columns]
        if missing:
            raise ValueError(f"table {name} lacks column(s) {missing}")
    keys = list(CELL_KEYS)
    fill = {"head": -1, "pos": -1}  # NaN keys (no head / all positions) must match too
    left = a.fillna(fill)[[*keys, "token", "component", value]]
    right = b.fillna(fill)[[*keys, value]]
    both = left.merge(right, on=keys, suffixes=("_a", "_b"), validate="one_to_one")
    if both.empty:
        raise ValueError("the two tables share no patching cell (same site, direction, "
                         "layer, head and position): compare runs of one task and model shape")
    both["difference"] = both[f"{value}_a"] - both[f"{value}_b"]
    return both.replace({"head": {-1: None}, "pos": {-1: None}}).astype(
        {"head": "float", "pos": "float"})


def sweep_patching(
    model: HookedModel, pairs: PromptPairs, spec: PatchSpec, metric: AnswerMetric,
    *, direction: Direction = "denoise", engine: Engine = "auto", progress: bool = False,
) -> PatchResult:
    """Patch every cell of spec's grid and score each patched run with `metric` (`progress`:
    a bar over the grid's layers, or its cells for the hook engine).

    engine 'fast' recomputes only what a patch changes (models built here with learned
    positions, Llama-family LLMs: `weights.fast_engine_gap`); 'hooks' runs one hooked
    forward pass per cell (any model); 'auto' picks.
    """
    contrast = Contrast(pairs, metric, direction)
    contrast.check(model)
    f = facts(model)
    spec.layer_list(f.n_layers)  # layers in range
    if spec.site in ("k", "v") and f.n_kv_heads != f.n_heads:
        raise ValueError(f"this model shares {f.n_kv_heads} key/value heads among {f.n_heads} "
                         f"query heads (grouped-query attention), so {spec.site} has no "
                         "per-head grid: patch z, q or pattern")
    weights = engine_weights(model, engine)
    if weights is None:
        clean, corrupted = contrast.baselines(model)
        base_tokens, donor_tokens = contrast.tokens(model)
        values = _sweep_hooks(model, base_tokens, donor_tokens, spec, metric,
                              contrast.base_and_donor(clean, corrupted)[0], progress)
    else:
        base, donor, clean, corrupted = contrast.traces(weights, device_of(model))
        values = _sweep_fast(weights, base, donor, spec, metric, pairs.clean.tokens.shape[1],
                             progress)
    check_finite(values, f"the patched runs of {spec.site}")
    return PatchResult(spec, direction, metric.label, values.cpu(), clean.cpu(), corrupted.cpu(),
                       pairs.position_labels())


@dataclass(frozen=True)
class Cell:
    """One patched activation: site at layer, optionally one head and one position."""

    site: Site
    layer: int
    head: int | None = None
    pos: int | None = None  # None: every position

    @property
    def hook(self) -> str:
        """The hook name of the patched site's own activation."""
        return hook_name(self.site, self.layer)

    def patch(self, donor: dict[str, Tensor], base: dict[str, Tensor]) -> Intervention:
        """The intervention copying this cell's activation from the donor run."""
        return patch(self.site, self.layer, donor, base, head=self.head, pos=self.pos)


def _donor_and_base(model: HookedModel, donor_tokens: Tensor, base_tokens: Tensor,
                    cells: list[Cell]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The activations the cells read: each cell's site in the donor run, and resid_mid in
    the base run (its patch is a change of the attention output)."""
    donor = capture_activations(model, donor_tokens, {c.hook for c in cells})
    mids = {c.hook for c in cells if c.site == "resid_mid"}
    return donor, capture_activations(model, base_tokens, mids) if mids else {}


@torch.inference_mode()
def run_with_patches(model: HookedModel, base_tokens: Tensor, donor_tokens: Tensor,
                     cells: list[Cell]) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of the base run with every cell's activation copied from the donor run (the
    residual stream itself for resid_* cells)."""
    donor, base = _donor_and_base(model, donor_tokens, base_tokens, cells)
    return run(model, base_tokens, [c.patch(donor, base) for c in cells]).logits


@torch.inference_mode()
def patch_each(model: HookedModel, base_tokens: Tensor, donor_tokens: Tensor, cells: list[Cell],
               metric: AnswerMetric, *, progress: bool = False) -> Float[Tensor, "cell batch"]:
    """The metric of the base run with each cell patched from the donor run, one cell at a
    time (a hooked forward pass per cell; the donor's activations are cached once): exact
    patching of a chosen list of components, on any model."""
    device = device_of(model)
    base_tokens, donor_tokens = base_tokens.to(device), donor_tokens.to(device)
    donor, base = _donor_and_base(model, donor_tokens, base_tokens, cells)
    out = []
    for cell in tqdm(cells, desc="exact patching", unit="cell", disable=not progress,
                     leave=False):
        out.append(metric(run(model, base_tokens, [cell.patch(donor, base)]).logits))
    return torch.stack(out).cpu()


@torch.inference_mode()
def _sweep_hooks(model: HookedModel, base_tokens: Tensor, donor_tokens: Tensor, spec: PatchSpec,
                 metric: AnswerMetric, base_score: Tensor, progress: bool = False) -> Tensor:
    """Per-prompt values [*grid, batch], one hooked forward pass per cell (any model)."""
    f = facts(model)
    n_pos = base_tokens.shape[1]
    heads = spec.site in HEAD_SITES
    layers = spec.layer_list(f.n_layers)
    grid = (len(layers), f.n_heads, n_pos) if heads and spec.by_pos else (
        (len(layers), f.n_heads) if heads else (len(layers), n_pos))
    cells = [Cell(spec.site, layer, h, p)
             for layer in layers
             for h in (range(f.n_heads) if heads else [None])
             for p in (range(n_pos) if spec.by_pos else [None])]
    donor, base = _donor_and_base(model, donor_tokens, base_tokens, cells)
    out = base_score.expand(*grid, -1).clone()  # cells after the metric position: no effect
    for c in tqdm(cells, desc=f"patch {spec.site}", unit="cell", disable=not progress,
                  leave=False):
        if c.pos is not None and c.pos > metric.pos:
            continue
        logits = run(model, base_tokens, [c.patch(donor, base)]).logits
        key = tuple(x for x in (layers.index(c.layer), c.head, c.pos) if x is not None)
        out[key] = metric(logits)
    return out


# ---- the fast engine ---------------------------------------------------------------------
def _start(site: str, layer: int) -> tuple[int, fw.Stage, str]:
    """Where a patch of `site` at `layer` re-enters the network: (layer, stage, resid)."""
    if site in ("resid_pre",):
        return layer, "pre", "resid_pre"
    if site in ("resid_mid", "attn_out") or site in HEAD_SITES:
        return layer, "mid", "resid_mid"
    return layer + 1, "pre", "resid_post"  # resid_post, mlp_out


def _sweep_fast(w: NativeWeights, base: fw.Trace, donor: fw.Trace, spec: PatchSpec,
                metric: AnswerMetric, n_pos: int, progress: bool = False) -> Tensor:
    n_layers, n_heads = w.W_Q.shape[:2]
    batch = base.resid_pre[0].shape[0]
    hi = metric.pos
    base_score = metric.score(base.logits)
    heads = spec.site in HEAD_SITES
    layers = spec.layer_list(n_layers)
    grid = (len(layers), n_heads, n_pos) if heads and spec.by_pos else (
        (len(layers), n_heads) if heads else (len(layers), n_pos))
    out = base_score.expand(*grid, batch).clone()  # cells after the metric position: no effect
    positions = list(range(hi + 1)) if spec.by_pos else [None]
    for row, layer in enumerate(tqdm(layers, desc=f"patch {spec.site}", unit="layer",
                                     disable=not progress, leave=False)):
        start_layer, stage, resid_name = _start(spec.site, layer)
        for p in positions:
            lo = 0 if p is None else p
            if lo < hi and _only_here(spec, start_layer, stage, n_layers):
                continue  # changes only position lo, which the last layer never reads again
            deltas = (_head_deltas(w, base, donor, spec.site, layer, p, hi) if heads
                      else _resid_delta(base, donor, spec.site, layer, p)[None])
            if not deltas.any():
                continue  # donor and base agree here (e.g. before the first differing token)
            deltas, lo = _trim(deltas, lo)
            start = base.get(resid_name, start_layer - (resid_name == "resid_post"))
            start = start[:, lo : lo + deltas.shape[2]]
            scores = _run_chunked(w, base, start_layer, stage, start, deltas, lo, hi, metric)
            for v, score in enumerate(scores):
                cell = (row, v) if heads else (row,)
                out[(*cell, p) if p is not None else cell] = score
    return out


def _only_here(spec: PatchSpec, start_layer: int, stage: fw.Stage, n_layers: int) -> bool:
    """Whether a by-position patch resuming here touches nothing the metric position reads:
    after the last attention layer, positions no longer mix."""
    past_attention = start_layer >= n_layers or (start_layer == n_layers - 1 and stage == "mid")
    return spec.by_pos and past_attention and spec.site not in ("k", "v")


def _trim(deltas: Tensor, lo: int) -> tuple[Tensor, int]:
    """Drop the leading positions no variant changes (a shared prompt prefix before the first
    differing token): they keep their base keys and values, so recomputing them is waste."""
    changed = deltas.flatten(0, 1).ne(0).any(-1).any(0)  # [pos]
    first = int(changed.nonzero()[0, 0])
    return deltas[:, :, first:], lo + first


def _resid_delta(base: fw.Trace, donor: fw.Trace, site: str, layer: int, p: int) -> Tensor:
    """[batch 1 d_model]: change of the residual stream at position p when `site` at
    (layer, p) is patched."""
    return (donor.get(site, layer)[:, p] - base.get(site, layer)[:, p])[:, None]


def _head_deltas(w: NativeWeights, base: fw.Trace, donor: fw.Trace, site: str, layer: int,
                 p: int | None, hi: int) -> Tensor:
    """[head batch pos d_model]: each head's change of the attention output, from lo to the
    last position it changes (p itself for z, q and pattern; p..hi for k and v)."""
    lo = 0 if p is None else p
    sl = slice(None) if p is None else slice(p, p + 1)
    q, k, v = (base.get(n, layer)[:, : hi + 1] for n in ("q", "k", "v"))
    if site == "z":
        z_new = _place(base.z[layer][:, : hi + 1], donor.z[layer][:, : hi + 1], sl)
    elif site == "pattern":
        pat = base.pattern[layer][:, :, : hi + 1, : hi + 1].clone()
        pat[:, :, sl] = donor.pattern[layer][:, :, : hi + 1, : hi + 1][:, :, sl]
        z_new = (pat @ v.transpose(1, 2)).transpose(1, 2)
    else:
        src = {"q": q, "k": k, "v": v}
        src[site] = _place(src[site], donor.get(site, layer)[:, : hi + 1], sl)
        z_new = fw.attend(w, src["q"], src["k"], src["v"], 0)[1]
    end = p + 1 if p is not None and site in ("z", "q", "pattern") else hi + 1
    dz = (z_new - base.z[layer][:, : hi + 1])[:, lo:end]  # [batch pos head d_head]
    n_heads, batch, n_pos = dz.shape[2], dz.shape[0], dz.shape[1]
    per_head = dz.permute(2, 0, 1, 3).reshape(n_heads, batch * n_pos, -1) @ w.W_O[layer]
    return per_head.view(n_heads, batch, n_pos, -1)  # [head batch pos d_model]


def _place(base: Tensor, donor: Tensor, sl: slice) -> Tensor:
    out = base.clone()
    out[:, sl] = donor[:, sl]
    return out


def _run_chunked(w: NativeWeights, base: fw.Trace, layer: int, stage: fw.Stage, start: Tensor,
                 deltas: Tensor, lo: int, hi: int, metric: AnswerMetric) -> list[Tensor]:
    """Scores [batch] for each variant (start + delta), chunked to bound memory."""
    n_var, batch = deltas.shape[:2]
    per_chunk = max(1, MAX_ROWS // (batch * (hi - lo + 1)))
    scores = []
    for i in range(0, n_var, per_chunk):
        resid = start[None] + deltas[i : i + per_chunk]
        logits = fw.run_suffix(w, base, layer, stage, resid, lo, hi)
        scores.extend(metric.score(row) for row in logits)
    return scores


# ---- the reference: TransformerLens's own patching functions -------------------------------
_TL_FUNCS: dict[tuple[str, bool], tuple[str, Callable[[Tensor], Tensor]]] = {
    # (site, by_pos) -> (TL function, permutation of its output into our axis order)
    ("resid_pre", True): ("get_act_patch_resid_pre", lambda t: t),
    ("resid_mid", True): ("get_act_patch_resid_mid", lambda t: t),
    ("attn_out", True): ("get_act_patch_attn_out", lambda t: t),
    ("mlp_out", True): ("get_act_patch_mlp_out", lambda t: t),
    ("z", True): ("get_act_patch_attn_head_out_by_pos", lambda t: t.transpose(1, 2)),
    ("q", True): ("get_act_patch_attn_head_q_by_pos", lambda t: t.transpose(1, 2)),
    ("k", True): ("get_act_patch_attn_head_k_by_pos", lambda t: t.transpose(1, 2)),
    ("v", True): ("get_act_patch_attn_head_v_by_pos", lambda t: t.transpose(1, 2)),
    ("pattern", True): ("get_act_patch_attn_head_pattern_by_pos", lambda t: t),
    ("z", False): ("get_act_patch_attn_head_out_all_pos", lambda t: t),
    ("q", False): ("get_act_patch_attn_head_q_all_pos", lambda t: t),
    ("k", False): ("get_act_patch_attn_head_k_all_pos", lambda t: t),
    ("v", False): ("get_act_patch_attn_head_v_all_pos", lambda t: t),
    ("pattern", False): ("get_act_patch_attn_head_pattern_all_pos", lambda t: t),
}


def reference_patching(model: HookedModel, base_tokens: Tensor, donor_tokens: Tensor,
                       spec: PatchSpec, metric: Callable[[Tensor], Tensor]) -> Tensor:
    """Mean metric per grid cell from TransformerLens's patching functions (our axis order):
    the independent oracle the tests and benchmarks hold both engines to. Runs under
    inference mode, where TL's resid_mid patch is a true residual-stream patch."""
    from transformer_lens import patching

    if spec.site == "resid_post":
        raise ValueError("TransformerLens has no resid_post grid; it equals resid_pre of the "
                         "next layer")
    name, to_ours = _TL_FUNCS[(spec.site, spec.by_pos)]
    func = getattr(patching, name)
    f = facts(model)
    extra, shape = {}, None
    if spec.layers is not None:  # TL's own loop over exactly these cells, in its axis order
        sizes = {"layer": spec.layer_list(f.n_layers), "pos": range(base_tokens.shape[1]),
                 "dest_pos": range(base_tokens.shape[1]), "head_index": range(f.n_heads),
                 "head": range(f.n_heads)}
        axes = func.keywords["index_axis_names"]
        rows = list(itertools.product(*(sizes[a] for a in axes)))
        extra = {"index_df": pd.DataFrame(rows, columns=list(axes)), "index_axis_names": None}
        shape = [len(sizes[a]) for a in axes]
    donor_cache = activation_cache(model, donor_tokens)
    with torch.inference_mode():
        out = func(model, base_tokens, donor_cache, lambda logits: metric(logits).mean(),
                   **extra)
    return to_ours(out if shape is None else out.reshape(shape))
