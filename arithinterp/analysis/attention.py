"""Attention summaries: how much each head, writing each answer digit, reads each operand digit.

The query of answer digit k is the position that predicts it (``answer_positions()[k] - 1``);
keys are the operand digits ``a0, a1, ..., b0, b1, ...`` (0 = least significant) and
``other`` (every remaining position), so each (layer, head, digit) sums to 1.
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.cache import check_batch_size
from arithinterp.components import Component, hook_name
from arithinterp.models import HookedModel, device_of, facts
from arithinterp.tasks import Dataset, TaskSpec


def _key_groups(spec: TaskSpec) -> list[tuple[str, list[int]]]:
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
        _, cache = model.run_with_cache(tokens[start : start + batch_size].to(device),
                                        names_filter=lambda n: n == name)
        out.append(cache[name][:, head].cpu())
    return torch.cat(out)


@torch.inference_mode()
def _operand_attention_batch(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], spec: TaskSpec
) -> Float[Tensor, "batch layer head digit key"]:
    """Attention from each answer digit's query position to each key group."""
    names = [hook_name("pattern", L) for L in range(facts(model).n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
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
