"""Attention summaries: how much each head, writing each answer digit, reads each operand
digit; and the attention graph of a model over whole sequences.

The query of answer digit k is the position that predicts it (``answer_positions()[k] - 1``);
keys are the operand digits ``a0, a1, ..., b0, b1, ...`` (0 = least significant) and
``other`` (every remaining position), so each (layer, head, digit) sums to 1.

The attention graph (`compute_attention_graph`) keeps, for every head and query position,
the key positions whose mean attention over the prompts reaches a threshold: a DAG of
edges key -> query (attention is causal), the "cache and retrieve" structure Bai et al.
(2025) describe for multiplication. `compute_operand_pairs` names, for every head and
query, the operand digit pair (a_i, b_j) it attends to most: the partial product a_i·b_j
that position can hold.
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.components import Component, hook_name
from arithinterp.core.cache import check_batch_size
from arithinterp.core.engine import run
from arithinterp.models import HookedModel, device_of, facts
from arithinterp.tasks import Dataset, Task


def _key_groups(spec: Task) -> list[tuple[str, list[int]]]:
    """(key label, positions) for each operand digit, then 'other' for the rest."""
    groups = [(f"{which}{i}", [p]) for which, ps in spec.operand_positions().items()
              for i, p in enumerate(ps)]
    taken = {g[1][0] for g in groups}
    return groups + [("other", [p for p in range(spec.seq_len) if p not in taken])]


def compute_attention_patterns(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], layer: int, head: int,
    *, batch_size: int = 256,
) -> Float[Tensor, "batch query_pos key_pos"]:
    """Attention pattern of head `layer`.`head` (rows: queries, each sums to 1), on the CPU."""
    n_layers, n_heads = facts(model).n_layers, facts(model).n_heads
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer must be in 0..{n_layers - 1}, got {layer}")
    if not 0 <= head < n_heads:
        raise ValueError(f"head must be in 0..{n_heads - 1}, got {head}")
    check_batch_size(batch_size)
    name = hook_name("pattern", layer)
    device = device_of(model)
    out = []
    for start in range(0, tokens.shape[0], batch_size):
        cache = run(model, tokens[start : start + batch_size].to(device), capture=[name]).acts
        out.append(cache[name][:, head].cpu())
    return torch.cat(out)


def compute_layer_patterns(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], layer: int
) -> Float[Tensor, "head query_pos key_pos"]:
    """Every head of `layer`: its attention pattern averaged over the prompts (one prompt
    gives that prompt's patterns), on the CPU."""
    return torch.stack([compute_attention_patterns(model, tokens, layer, h).mean(0)
                        for h in range(facts(model).n_heads)])


@torch.inference_mode()
def _operand_attention_batch(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], spec: Task
) -> Float[Tensor, "batch layer head digit key"]:
    """Attention from each answer digit's query position to each key group."""
    names = [hook_name("pattern", L) for L in range(facts(model).n_layers)]
    cache = run(model, tokens, capture=names).acts
    queries = [p - 1 for p in spec.answer_positions()]
    patterns = torch.stack([cache[n][:, :, queries] for n in names], dim=1)
    return torch.stack([patterns[..., ps].sum(-1) for _, ps in _key_groups(spec)], dim=-1)


def compute_operand_attention(
    model: HookedModel, data: Dataset, *, batch_size: int = 256
) -> pd.DataFrame:
    """Mean (and std over prompts) attention from each answer digit's query to each key group.

    One row per (layer, head, digit, key). Columns: layer, head, component, digit,
    query_pos, key, key_pos (NA for 'other'), attention, std.
    """
    check_batch_size(batch_size)
    spec = data.spec
    device = device_of(model)
    per_prompt = torch.cat([
        _operand_attention_batch(model, data.tokens[s : s + batch_size].to(device), spec).cpu()
        for s in range(0, len(data), batch_size)
    ]).double()
    mean = per_prompt.mean(0)
    std = per_prompt.std(0) if len(per_prompt) > 1 else torch.full_like(mean, float("nan"))
    groups = _key_groups(spec)
    queries = [p - 1 for p in spec.answer_positions()]
    rows = [
        {"layer": L, "head": h, "component": Component("head", L, h).name, "digit": k,
         "query_pos": q,
         "key": key, "key_pos": ps[0] if key != "other" else None,
         "attention": float(mean[L, h, k, j]), "std": float(std[L, h, k, j])}
        for L in range(facts(model).n_layers) for h in range(facts(model).n_heads)
        for k, q in enumerate(queries) for j, (key, ps) in enumerate(groups)
    ]
    df = pd.DataFrame(rows)
    df["key_pos"] = df["key_pos"].astype("Int64")
    return df


@torch.inference_mode()
def _mean_patterns(model: HookedModel, data: Dataset, batch_size: int
                   ) -> tuple[Tensor, Tensor]:
    """Mean and std over prompts of every head's pattern: [layer head query key] each."""
    check_batch_size(batch_size)
    names = [hook_name("pattern", L) for L in range(facts(model).n_layers)]
    device = device_of(model)
    total = total_sq = None
    for start in range(0, len(data), batch_size):
        cache = run(model, data.tokens[start : start + batch_size].to(device), capture=names).acts
        p = torch.stack([cache[n] for n in names], dim=1).double().cpu()  # [b L H q k]
        total = p.sum(0) if total is None else total + p.sum(0)
        total_sq = (p * p).sum(0) if total_sq is None else total_sq + (p * p).sum(0)
    n = len(data)
    mean = total / n
    var = (total_sq / n - mean * mean).clamp(min=0) * (n / max(1, n - 1))
    return mean, var.sqrt()


def compute_attention_graph(
    model: HookedModel, data: Dataset, *, threshold: float = 0.1, batch_size: int = 256
) -> pd.DataFrame:
    """Edges key -> query of every head whose mean attention over `data` is >= threshold.

    One row per (layer, head, query_pos, key_pos). Columns: layer, head, component,
    query_pos, query_label, key_pos, key_label, attention (mean), std.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    mean, std = _mean_patterns(model, data, batch_size)
    labels = data.spec.position_labels()
    keep = (mean >= threshold).nonzero().tolist()
    rows = [{"layer": L, "head": h, "component": Component("head", L, h).name,
             "query_pos": q, "query_label": labels[q], "key_pos": k, "key_label": labels[k],
             "attention": float(mean[L, h, q, k]), "std": float(std[L, h, q, k])}
            for L, h, q, k in keep]
    return pd.DataFrame(rows, columns=["layer", "head", "component", "query_pos",
                                       "query_label", "key_pos", "key_label", "attention",
                                       "std"])


def compute_operand_pairs(model: HookedModel, data: Dataset, *, batch_size: int = 256
                          ) -> pd.DataFrame:
    """For every head and every query position after the operands: the operand digit pair
    (a_i, b_j) with the largest summed mean attention, i + j (the answer digit whose running
    sum the partial product a_i·b_j enters) and both attentions.

    Columns: layer, head, component, query_pos, query_label, a_digit, b_digit, i_plus_j,
    a_attention, b_attention, pair_attention.
    """
    mean, _ = _mean_patterns(model, data, batch_size)
    spec = data.spec
    ops = spec.operand_positions()
    labels = spec.position_labels()
    a_pos, b_pos = torch.tensor(ops["a"]), torch.tensor(ops["b"])
    first = int(max(ops["a"] + ops["b"]))
    rows = []
    n_layers, n_heads, n_q = mean.shape[:3]
    for L in range(n_layers):
        for h in range(n_heads):
            for q in range(first, n_q):
                att_a, att_b = mean[L, h, q, a_pos], mean[L, h, q, b_pos]
                pair = att_a[:, None] + att_b[None, :]  # [i j]
                i, j = divmod(int(pair.argmax()), len(b_pos))
                rows.append({"layer": L, "head": h, "component": Component("head", L, h).name,
                             "query_pos": q, "query_label": labels[q], "a_digit": i,
                             "b_digit": j, "i_plus_j": i + j, "a_attention": float(att_a[i]),
                             "b_attention": float(att_b[j]),
                             "pair_attention": float(pair[i, j])})
    return pd.DataFrame(rows)
