"""MLP neurons, one at a time: a small Neuronpedia for arithmetic models.

- `compute_neuron_dla`: each neuron's direct contribution to the logit difference at the
  metric's position, through the final norm with its cached scale (``post[n] * W_out[n]``
  read out toward correct − wrong). A layer's neurons plus its output bias sum to that
  MLP's row of `attribution.compute_dla_per_prompt`, prompt by prompt.
- `compute_neuron_patching`: denoise or noise single neurons' activations
  (``blocks.L.mlp.hook_post``) at one or every position; patching every neuron of a layer at
  one position equals patching that layer's ``mlp_out`` there.
- `top_activating` and `activation_by`: the problems a neuron fires most on, and its mean
  activation grouped by a property of the problem (an operand digit, a carry, a running sum).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from arithinterp.components import hook_name, neuron_label
from arithinterp.core.cache import check_batch_size, run_cached
from arithinterp.core.contrast import Contrast, Direction
from arithinterp.core.engine import run
from arithinterp.core.interventions import patch
from arithinterp.core.metrics import AnswerMetric, directed_effect, normalized_effect
from arithinterp.models import HookedModel, device_of, facts, readout
from arithinterp.tasks import Dataset, PromptPairs


def _check_layer(model: HookedModel, layer: int) -> int:
    f = facts(model)
    if f.attn_only:
        raise ValueError("the model is attention-only: it has no MLP neurons")
    if not 0 <= layer < f.n_layers:
        raise ValueError(f"layer must be in 0..{f.n_layers - 1}, got {layer}")
    return f.d_mlp


def _check_pos(data: Dataset | PromptPairs, pos: int | None) -> None:
    n_pos = (data.clean if isinstance(data, PromptPairs) else data).tokens.shape[1]
    if pos is not None and not 0 <= pos < n_pos:
        raise ValueError(f"pos must be in 0..{n_pos - 1}, got {pos}")


@torch.inference_mode()
def compute_neuron_dla(
    model: HookedModel, data: Dataset, metric: AnswerMetric, layer: int, *,
    batch_size: int = 256,
) -> Float[Tensor, "batch neuron"]:
    """Per prompt and neuron of MLP `layer`: its direct logit attribution to correct − wrong
    at ``metric.pos`` (positive = helps the correct answer)."""
    if metric.kind != "logit_diff":
        raise ValueError(f"DLA decomposes a logit difference; metric.kind is {metric.kind!r}")
    _check_layer(model, layer)
    metric.check(len(data), data.tokens.shape[1], facts(model).d_vocab)
    check_batch_size(batch_size)
    out = readout(model)
    W_out = model.W_out[layer].detach()  # [neuron d_model]
    if out.norm == "LN":  # centering is linear: it applies to each neuron's output row
        W_out = W_out - W_out.mean(-1, keepdim=True)
    if out.norm is not None:
        W_out = W_out * out.norm_weight
    names = [hook_name("mlp_post", layer)] + ([hook_name("scale")] if out.norm else [])
    device = device_of(model)
    rows = []
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        cache = run_cached(model, data.tokens[sl], names, batch_size=batch_size)
        post = cache[names[0]][:, metric.pos].to(device)  # [batch neuron]
        direction = (out.W_U[:, metric.correct[sl].to(device)]
                     - out.W_U[:, metric.wrong[sl].to(device)]).T  # [batch d_model]
        per_unit = direction @ W_out.T  # [batch neuron]
        if out.norm is not None:
            per_unit = per_unit / cache[names[1]][:, metric.pos].to(device)
        rows.append((post * per_unit).cpu())
    return torch.cat(rows)


def neuron_table(model: HookedModel, data: Dataset, metric: AnswerMetric, layer: int, *,
                 batch_size: int = 256) -> pd.DataFrame:
    """One row per neuron of MLP `layer`, by |DLA| (rank 1 = largest): neuron, component
    (``L1.n37``), dla and dla_std over prompts, and its activation (mean, std) at
    ``metric.pos``."""
    dla = compute_neuron_dla(model, data, metric, layer, batch_size=batch_size).double()
    acts = run_cached(model, data.tokens, [hook_name("mlp_post", layer)],
                      batch_size=batch_size)[hook_name("mlp_post", layer)][:, metric.pos]
    table = pd.DataFrame({
        "neuron": np.arange(dla.shape[1]),
        "component": [neuron_label(layer, n) for n in range(dla.shape[1])],
        "dla": dla.mean(0).numpy(), "dla_std": dla.std(0).numpy(),
        "activation": acts.double().mean(0).numpy(), "activation_std": acts.double().std(0).numpy(),
    })
    table = table.reindex(table["dla"].abs().sort_values(ascending=False, kind="stable").index)
    return table.assign(rank=np.arange(1, len(table) + 1)).reset_index(drop=True)


@torch.inference_mode()
def compute_neuron_patching(
    model: HookedModel, pairs: PromptPairs, metric: AnswerMetric, layer: int,
    neurons: Sequence[int] | Sequence[Sequence[int]], *, pos: int | None = None,
    direction: Direction = "denoise",
) -> pd.DataFrame:
    """Patch neurons of MLP `layer` (each entry of `neurons` one neuron, or a list patched
    together) at position `pos` (None: every position) from the other run, and score with
    `metric`. Columns: neurons, pos, value (mean patched metric), normalized (0 = the
    corrupted run, 1 = the clean run) and effect (`directed_effect`)."""
    d_mlp = _check_layer(model, layer)
    _check_pos(pairs, pos)
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    groups = [[int(n)] if np.ndim(n) == 0 else [int(x) for x in n] for n in neurons]
    if not groups or any(not g for g in groups):
        raise ValueError("neurons is empty: name at least one neuron to patch")
    bad = sorted({n for g in groups for n in g if not 0 <= n < d_mlp})
    if bad:
        raise ValueError(f"neurons must be in 0..{d_mlp - 1}, got {bad}")
    name = hook_name("mlp_post", layer)
    contrast = Contrast(pairs, metric, direction)
    base_tokens, donor_tokens = contrast.tokens(model)
    base_run, donor_run = run(model, base_tokens), run(model, donor_tokens, capture=[name])
    m_clean, m_corrupt = (float(metric(r.logits).mean())
                          for r in contrast.clean_and_corrupted(base_run, donor_run))
    rows = []
    for group in groups:
        patched = run(model, base_tokens, [patch("mlp_post", layer, donor_run.acts, pos=pos,
                                                 units=tuple(group))])
        value = float(metric(patched.logits).mean())
        norm = float(normalized_effect(torch.tensor(value), m_clean, m_corrupt))
        rows.append({"neurons": ",".join(map(str, group)), "pos": pos, "value": value,
                     "normalized": norm, "effect": directed_effect(norm, direction)})
    return pd.DataFrame(rows)


def compute_neuron_ranking(model: HookedModel, pairs: PromptPairs, metric: AnswerMetric,
                           layer: int, *, top: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MLP `layer` on minimal pairs: every neuron by |DLA| on the clean prompts
    (`neuron_table`), and the `top` neurons' patching, each alone at every position, in both
    directions (`compute_neuron_patching` rows with a direction column, denoise first)."""
    table = neuron_table(model, pairs.clean, metric, layer)
    chosen = table["neuron"].head(top).tolist()
    patched = [compute_neuron_patching(model, pairs, metric, layer, chosen, direction=d)
               .assign(direction=d) for d in ("denoise", "noise")]
    return table, pd.concat(patched, ignore_index=True)


@torch.inference_mode()
def neuron_activations(model: HookedModel, data: Dataset, layer: int, neuron: int,
                       pos: int) -> Float[Tensor, " batch"]:
    """One neuron's activation (``hook_post``) at `pos` on every prompt."""
    d_mlp = _check_layer(model, layer)
    _check_pos(data, pos)
    if not 0 <= neuron < d_mlp:
        raise ValueError(f"neuron must be in 0..{d_mlp - 1}, got {neuron}")
    name = hook_name("mlp_post", layer)
    return run_cached(model, data.tokens, [name])[name][:, pos, neuron].float()


def top_activating(model: HookedModel, data: Dataset, layer: int, neuron: int, pos: int, *,
                   k: int = 20) -> pd.DataFrame:
    """The k problems the neuron is most active on at `pos`: a, b, problem, activation."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    acts = neuron_activations(model, data, layer, neuron, pos)
    order = torch.argsort(acts, descending=True, stable=True)[:k]
    return pd.DataFrame({"a": data.a[order].tolist(), "b": data.b[order].tolist(),
                         "problem": [data.spec.display(int(data.a[i]), int(data.b[i]))
                                     for i in order],
                         "activation": acts[order].double().numpy()})


def activation_by(activations: Float[Tensor, " batch"],
                  values: Tensor | np.ndarray, *, name: str = "value") -> pd.DataFrame:
    """Mean, std and count of a neuron's activations grouped by one property of each prompt
    (e.g. ``probes.targets.make_targets`` values: a digit, a carry, a running sum)."""
    if len(activations) != len(values):
        raise ValueError(f"{len(activations)} activations but {len(values)} values")
    df = pd.DataFrame({name: np.asarray(values), "activation": activations.double().numpy()})
    return (df.groupby(name)["activation"].agg(["mean", "std", "count"]).reset_index()
            .rename(columns={"mean": "activation", "std": "activation_std"}))
