"""Path patching: the effect of one sender along one path only, everything else frozen.

A sender is a head (``L0H2``) or an MLP (``L0.mlp``); its output difference (donor run
minus base run) is added to the residual stream and read by one receiver only:

- ``receiver="logits"``: the direct path; the final residual stream gets the sender's
  difference and goes through ln_final and the unembedding (the norm is recomputed);
- ``receiver="L1H3"`` with ``receiver_input`` ``q``, ``k`` or ``v``: that head's query (key,
  value) input becomes base residual + sender difference; the head's new output then
  flows through the rest of the network as usual (Wang et al. 2022's path patching).

Denoising uses the corrupted run as base and the clean run as donor; noising the reverse.
The fast engine computes this from the base and donor traces; the hook engine builds it
the brute-force way (a run with every other head and MLP frozen to its base value to read
the receiver's input, then a run with that input patched in) and works on any bridge,
including wrapped Hugging Face models, which have no split q/k/v input hooks.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from arithinterp.analysis import forward as fw
from arithinterp.analysis.localize import component_name, parse_component
from arithinterp.analysis.metrics import AnswerMetric, normalized_effect
from arithinterp.analysis.patching import Direction
from arithinterp.models import HookedModel, NativeWeights, act_name, native_weights
from arithinterp.tasks import PromptPairs

Input = Literal["q", "k", "v"]


def senders_for(model: HookedModel, receiver: str) -> list[str]:
    """Every head and MLP upstream of the receiver ('logits': all of them)."""
    cfg = model.cfg
    top = cfg.n_layers if receiver == "logits" else parse_component(receiver)[1]
    names = []
    for layer in range(top):
        names += [component_name("head", layer, h) for h in range(cfg.n_heads)]
        if not cfg.attn_only:
            names.append(component_name("mlp", layer))
    return names


def _check(model: HookedModel, sender: str, receiver: str, receiver_input: Input | None):
    kind, layer, head = parse_component(sender)
    if kind == "attn":
        raise ValueError(f"sender must be a head or an MLP, got {sender!r}")
    if receiver == "logits":
        if receiver_input is not None:
            raise ValueError("receiver_input is only meaningful for a head receiver")
        return
    r_kind, r_layer, _ = parse_component(receiver)
    if r_kind != "head":
        raise ValueError(f"receiver must be 'logits' or a head such as 'L1H0', got {receiver!r}")
    if receiver_input not in ("q", "k", "v"):
        raise ValueError(f"receiver_input must be 'q', 'k' or 'v' for a head receiver, got "
                         f"{receiver_input!r}")
    if r_layer <= layer:
        raise ValueError(f"receiver {receiver} must sit in a later layer than sender {sender}")
    kv = model.cfg.n_key_value_heads
    if receiver_input in ("k", "v") and kv not in (None, model.cfg.n_heads):
        raise ValueError("k/v receivers are not defined for grouped-query attention")


def sweep_paths(
    model: HookedModel, pairs: PromptPairs, metric: AnswerMetric, *,
    receiver: str = "logits", receiver_input: Input | None = None,
    senders: list[str] | None = None, direction: Direction = "denoise",
    engine: Literal["auto", "fast", "hooks"] = "auto",
) -> pd.DataFrame:
    """Path-patching effect of each sender on one receiver: a tidy table with the mean
    patched metric (`value`), its std over prompts and the normalized effect (1 = clean)."""
    senders = senders if senders is not None else senders_for(model, receiver)
    for s in senders:
        _check(model, s, receiver, receiver_input)
    if direction not in ("denoise", "noise"):
        raise ValueError(f"direction must be 'denoise' or 'noise', got {direction!r}")
    weights = native_weights(model) if engine != "hooks" else None
    if engine == "fast" and weights is None:
        raise ValueError("the fast engine covers from-scratch models with learned positions")
    device = next(model.parameters()).device
    clean, corrupt = pairs.clean.tokens.to(device), pairs.corrupt.tokens.to(device)
    base_tokens, donor_tokens = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    with torch.inference_mode():
        clean_score = metric(model(clean)).mean().item()
        corrupt_score = metric(model(corrupt)).mean().item()
    if weights is not None:
        end = metric.pos + 1
        base = fw.run_trace(weights, base_tokens[:, :end])
        donor = fw.run_trace(weights, donor_tokens[:, :end])
        values = [_fast_path(weights, base, donor, s, receiver, receiver_input, metric)
                  for s in senders]
    else:
        values = [_hook_path(model, base_tokens, donor_tokens, s, receiver, receiver_input,
                             metric) for s in senders]
    means = torch.stack([v.mean() for v in values]).cpu()
    normalized = normalized_effect(means, clean_score, corrupt_score)
    rows = []
    for s, v, mean, norm in zip(senders, values, means, normalized, strict=True):
        kind, layer, head = parse_component(s)
        rows.append({"sender": s, "sender_kind": kind, "sender_layer": layer, "sender_head": head,
                     "receiver": receiver, "receiver_input": receiver_input,
                     "value": float(mean), "std": float(v.std()) if v.numel() > 1 else 0.0,
                     "normalized": float(norm), "direction": direction, "metric": metric.label})
    return pd.DataFrame(rows)


# ---- fast engine ---------------------------------------------------------------------------
def _sender_delta(w: NativeWeights, base: fw.Trace, donor: fw.Trace, sender: str) -> Tensor:
    """[batch pos d_model]: what the sender writes in the donor run minus the base run."""
    kind, layer, head = parse_component(sender)
    if kind == "mlp":
        return donor.mlp_out[layer] - base.mlp_out[layer]
    return (donor.z[layer][:, :, head] - base.z[layer][:, :, head]) @ w.W_O[layer, head]


@torch.inference_mode()
def _fast_path(w: NativeWeights, base: fw.Trace, donor: fw.Trace, sender: str, receiver: str,
               receiver_input: Input | None, metric: AnswerMetric) -> Float[Tensor, " batch"]:
    delta = _sender_delta(w, base, donor, sender)
    hi = metric.pos
    if receiver == "logits":
        return metric.score(fw.unembed(w, base.resid_post[-1][:, hi] + delta[:, hi]))
    _, layer, head = parse_component(receiver)
    sources = dict(zip("qkv", fw.qkv(w, layer, base.resid_pre[layer] + delta), strict=True))
    q, k, v = (base.get(n, layer).clone() for n in "qkv")
    picked = {"q": q, "k": k, "v": v}[receiver_input]
    picked[:, :, head] = sources[receiver_input][:, :, head]
    z = fw.attend(w, q, k, v, 0)[1]
    dz = z[:, :, head] - base.z[layer][:, :, head]
    resid = base.resid_mid[layer] + dz @ w.W_O[layer, head]
    return metric.score(fw.run_suffix(w, base, layer, "mid", resid[None], 0, hi)[0])


# ---- hook engine (any bridge) --------------------------------------------------------------
def _set(act: Tensor, hook, *, value: Tensor, head: int | None = None) -> Tensor:
    """Replace act by value, or only one head's slice of it when head is given."""
    if head is None:
        return value
    act = act.clone()
    act[:, :, head] = value[:, :, head]
    return act


@torch.inference_mode()
def _hook_path(model: HookedModel, base_tokens: Tensor, donor_tokens: Tensor, sender: str,
               receiver: str, receiver_input: Input | None,
               metric: AnswerMetric) -> Float[Tensor, " batch"]:
    cfg = model.cfg
    kind, s_layer, s_head = parse_component(sender)
    names = {act_name(site, layer) for layer in range(cfg.n_layers)
             for site in ("z",) + (() if cfg.attn_only else ("mlp_out",))}
    _, base_cache = model.run_with_cache(base_tokens, names_filter=lambda n: n in names)
    _, donor_cache = model.run_with_cache(donor_tokens, names_filter=lambda n: n in names)
    # run 1: every head and MLP from the sender's layer on frozen to its base value, except
    # the sender, which carries its donor value
    freeze = []
    for layer in range(s_layer, cfg.n_layers):
        z_name = act_name("z", layer)
        if kind == "head" and layer == s_layer:
            donor_z = base_cache[z_name].clone()
            donor_z[:, :, s_head] = donor_cache[z_name][:, :, s_head]
            freeze.append((z_name, partial(_set, value=donor_z)))
        else:
            freeze.append((z_name, partial(_set, value=base_cache[z_name])))
        if not cfg.attn_only:
            mlp_name = act_name("mlp_out", layer)
            source = donor_cache if (kind == "mlp" and layer == s_layer) else base_cache
            freeze.append((mlp_name, partial(_set, value=source[mlp_name])))
    if receiver == "logits":
        return metric(model.run_with_hooks(base_tokens, fwd_hooks=freeze))
    _, r_layer, r_head = parse_component(receiver)
    r_name = act_name(receiver_input, r_layer)
    captured: dict[str, Tensor] = {}

    def capture(act: Tensor, hook) -> Tensor:
        captured["act"] = act.clone()
        return act

    model.run_with_hooks(base_tokens, fwd_hooks=[(r_name, capture), *freeze])
    # run 2: only the receiver's input is patched; everything else computes normally
    patch = partial(_set, value=captured["act"], head=r_head)
    return metric(model.run_with_hooks(base_tokens, fwd_hooks=[(r_name, patch)]))
