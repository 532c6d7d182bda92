"""Direct logit attribution (DLA) and the logit lens, read from a cached forward pass.

DLA splits the logit difference at ``metric.pos`` (correct − wrong; positive = helps the
correct answer) into what each component writes to the final residual stream, seen
through the final norm with its cached scale: every head (``hook_z @ W_O``), every MLP,
the token and positional embeddings, the attention output biases, and the constant rows
``ln_final.b`` and ``b_U``. The rows of one prompt sum to its logit difference exactly.

The logit lens reads each layer's residual stream at the position that predicts each
answer digit through the model's own final norm (scale recomputed) and unembedding.
"""

from __future__ import annotations

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.components import Component, hook_name, layer_label
from arithinterp.core.cache import check_batch_size
from arithinterp.core.engine import run
from arithinterp.core.metrics import AnswerMetric
from arithinterp.models import (
    HookedModel,
    device_of,
    facts,
    head_out_weights,
    readout,
    run_readout,
)
from arithinterp.tasks import Dataset, Prompts


# ---- DLA -----------------------------------------------------------------------------------
def _has_pos_embed(model: HookedModel) -> bool:
    return facts(model).positional == "standard"


def _dla_labels(model: HookedModel) -> list[tuple[str, int | None, int | None, str]]:
    """(component, layer, head, kind) per row, in residual-stream order."""
    f = facts(model)
    rows: list[tuple[str, int | None, int | None, str]] = [("embed", None, None, "embed")]
    if _has_pos_embed(model):
        rows.append(("pos_embed", None, None, "pos_embed"))
    for layer in range(f.n_layers):
        rows += [(Component("head", layer, h).name, layer, h, "head") for h in range(f.n_heads)]
        if not f.attn_only:
            rows.append((Component("mlp", layer).name, layer, None, "mlp"))
    rows.append(("b_O", None, None, "bias"))
    if readout(model).norm_bias is not None:
        rows.append(("ln_final.b", None, None, "bias"))
    rows.append(("b_U", None, None, "bias"))
    return rows


def _dla_hooks(model: HookedModel) -> set[str]:
    f = facts(model)
    names = {hook_name("embed")} | {hook_name("z", L) for L in range(f.n_layers)}
    if _has_pos_embed(model):
        names.add(hook_name("pos_embed"))
    if not f.attn_only:
        names |= {hook_name("mlp_out", L) for L in range(f.n_layers)}
    if f.normalization is not None:
        names.add(hook_name("scale"))
    return names


def _dla_batch(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], pos: int,
    direction: Float[Tensor, "batch d_model"], bias: Float[Tensor, " batch"],
) -> Float[Tensor, "batch component"]:
    """Per-prompt DLA rows (in `_dla_labels` order) for one batch, toward each prompt's
    unembedding `direction` (bias: its share of b_U)."""
    hooks = _dla_hooks(model)
    cache = run(model, tokens, capture=hooks).acts
    f = facts(model)
    W_O, b_O = head_out_weights(model)
    parts = [cache[hook_name("embed")][:, pos, None]]
    if _has_pos_embed(model):
        parts.append(cache[hook_name("pos_embed")][:, pos, None])
    for layer in range(f.n_layers):
        z = cache[hook_name("z", layer)][:, pos]
        parts.append(torch.einsum("bhd,hdm->bhm", z, W_O[layer]))
        if not f.attn_only:
            parts.append(cache[hook_name("mlp_out", layer)][:, pos, None])
    parts.append(b_O.sum(0).expand(len(tokens), 1, -1))
    comps = torch.cat(parts, dim=1)  # [batch, component, d_model]
    out = readout(model)
    if out.norm == "LN":  # LN centers its input; centering is linear, so it splits per component
        comps = comps - comps.mean(-1, keepdim=True)
    if out.norm is not None:
        comps = comps / cache[hook_name("scale")][:, pos, None] * out.norm_weight
    rows = [torch.einsum("bcm,bm->bc", comps, direction)]
    if out.norm_bias is not None:
        rows.append((direction @ out.norm_bias)[:, None])
    rows.append(bias[:, None])
    return torch.cat(rows, dim=1)


def _logit_diff_direction(model: HookedModel, correct: Tensor, wrong: Tensor):
    out = readout(model)
    return (out.W_U[:, correct] - out.W_U[:, wrong]).T, out.b_U[correct] - out.b_U[wrong]


def _frame(values: Tensor, labels) -> pd.DataFrame:
    """Mean and std over prompts of per-prompt DLA rows, one table row per component."""
    per_prompt = pd.DataFrame(values.double().numpy(), columns=[r[0] for r in labels])
    return pd.DataFrame({
        "component": [r[0] for r in labels],
        "layer": pd.array([r[1] for r in labels], dtype="Int64"),
        "head": pd.array([r[2] for r in labels], dtype="Int64"),
        "kind": [r[3] for r in labels],
        "value": per_prompt.mean().to_numpy(),
        "std": per_prompt.std().to_numpy(),  # ddof=1; NaN for a single prompt
    })


@torch.inference_mode()
def compute_dla_per_prompt(
    model: HookedModel, data: Prompts, metric: AnswerMetric, *, batch_size: int = 256
) -> tuple[Float[Tensor, "batch component"], list[str]]:
    """Per-prompt DLA to the logit diff (correct − wrong) and row labels; rows sum to it."""
    if metric.kind != "logit_diff":
        raise ValueError(f"DLA decomposes a logit difference; metric.kind is {metric.kind!r}")
    metric.check(len(data), data.tokens.shape[1], facts(model).d_vocab)
    check_batch_size(batch_size)
    device = device_of(model)
    out = []
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        direction, bias = _logit_diff_direction(model, metric.correct[sl].to(device),
                                                metric.wrong[sl].to(device))
        out.append(_dla_batch(model, data.tokens[sl].to(device), metric.pos, direction,
                              bias).cpu())
    return torch.cat(out), [row[0] for row in _dla_labels(model)]


def compute_dla(
    model: HookedModel, data: Prompts, metric: AnswerMetric, *, batch_size: int = 256
) -> pd.DataFrame:
    """DLA per component (mean and std over prompts); `value` > 0 pushes correct over wrong.

    Columns: component, layer, head, kind, value, std. The values sum to the mean logit diff.
    """
    values, _ = compute_dla_per_prompt(model, data, metric, batch_size=batch_size)
    return _frame(values, _dla_labels(model))


@torch.inference_mode()
def compute_digit_attribution(
    model: HookedModel, data: Dataset, digit_ids: Int[Tensor, " digit"], *,
    batch_size: int = 256,
) -> pd.DataFrame:
    """DLA of every answer digit without corrupted partners: toward logit(the correct digit)
    − the mean logit of the ten digit tokens, at the position that predicts that digit.

    One row per (answer digit, component); the values of one digit sum to its mean margin
    over the average digit. Columns: digit, component, layer, head, kind, value, std.
    """
    check_batch_size(batch_size)
    device = device_of(model)
    ids = digit_ids.to(device)
    out = readout(model)
    frames = []
    for k, target in enumerate(data.spec.answer_positions()):
        values = []
        for start in range(0, len(data), batch_size):
            tokens = data.tokens[start : start + batch_size].to(device)
            correct = tokens[:, target]
            direction = (out.W_U[:, correct] - out.W_U[:, ids].mean(1, keepdim=True)).T
            bias = out.b_U[correct] - out.b_U[ids].mean()
            values.append(_dla_batch(model, tokens, target - 1, direction, bias).cpu())
        frames.append(_frame(torch.cat(values), _dla_labels(model)).assign(digit=k))
    df = pd.concat(frames, ignore_index=True)
    return df[["digit"] + [c for c in df.columns if c != "digit"]]


# ---- logit lens ----------------------------------------------------------------------------
def _lens_stages(model: HookedModel) -> list[tuple[str, int | None, str]]:
    """(stage, layer, hook name): the embeddings, then each block's resid_post."""
    stages: list[tuple[str, int | None, str]] = [("embed", None, hook_name("resid_pre", 0))]
    return stages + [(layer_label(L), L, hook_name("resid_post", L))
                     for L in range(facts(model).n_layers)]


@torch.inference_mode()
def compute_logit_lens(model: HookedModel, data: Prompts, *, batch_size: int = 256
                       ) -> pd.DataFrame:
    """Accuracy, mean rank (0 = top) and mean probability of the correct answer digit token.

    One row per (stage, answer digit k), read at position answer_positions()[k] - 1; for an
    LLM's `TokenPrompts`, one per stage for the answer's first token at the last position.
    Columns: stage, layer, digit, pos, token (label of pos), target, accuracy, mean_rank,
    mean_prob.
    """
    check_batch_size(batch_size)
    labels = data.position_labels()
    if isinstance(data, Dataset):
        targets = data.spec.answer_positions()
        queries, names = [p - 1 for p in targets], [labels[t] for t in targets]
    else:
        queries, names = [int(data.tokens.shape[1]) - 1], ["first answer token"]
    stages = _lens_stages(model)
    hooks = {s[2] for s in stages}
    device = device_of(model)
    acc, rank, prob = [], [], []  # each: [stage, batch, digit] per batch
    for start in range(0, len(data), batch_size):
        tokens = data.tokens[start : start + batch_size].to(device)
        cache = run(model, tokens, capture=hooks).acts
        correct = tokens[:, targets] if isinstance(data, Dataset) else \
            data.target[start : start + batch_size, None].to(device)
        logits = torch.stack([run_readout(model, cache[s[2]][:, queries]) for s in stages])
        picked = logits.gather(-1, correct.expand(len(stages), -1, -1)[..., None])
        acc.append((logits.argmax(-1) == correct).float().cpu())
        rank.append((logits > picked).sum(-1).float().cpu())
        prob.append(logits.float().softmax(-1).gather(
            -1, correct.expand(len(stages), -1, -1)[..., None])[..., 0].cpu())
    acc_m, rank_m, prob_m = (torch.cat(x, dim=1).double().mean(1) for x in (acc, rank, prob))
    rows = [
        {"stage": stage, "layer": layer, "digit": k, "pos": q, "token": labels[q],
         "target": names[k], "accuracy": float(acc_m[i, k]),
         "mean_rank": float(rank_m[i, k]), "mean_prob": float(prob_m[i, k])}
        for i, (stage, layer, _) in enumerate(stages) for k, q in enumerate(queries)
    ]
    df = pd.DataFrame(rows)
    df["layer"] = df["layer"].astype("Int64")
    return df
