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

from typing import Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from arithinterp.components import Component, all_components, hook_name
from arithinterp.core import fast as fw
from arithinterp.core.contrast import Contrast, Direction, engine_weights
from arithinterp.core.engine import capture_activations, run
from arithinterp.core.interventions import Intervention, Replace, patch
from arithinterp.core.metrics import AnswerMetric, check_finite, normalized_effect
from arithinterp.models import HookedModel, facts
from arithinterp.tasks import PromptPairs
from arithinterp.weights import NativeWeights

Input = Literal["q", "k", "v"]


def senders_for(model: HookedModel, receiver: str | Component) -> list[Component]:
    """Every head and MLP upstream of the receiver ('logits': all of them)."""
    f = facts(model)
    top = f.n_layers if receiver == "logits" else Component.parse(receiver).layer
    return [c for c in all_components(f) if c.layer < top]


def _check(model: HookedModel, sender: Component, receiver: str | Component,
           receiver_input: Input | None) -> None:
    if sender.kind not in ("head", "mlp"):
        raise ValueError(f"sender must be a head or an MLP, got {sender.name!r}")
    f = facts(model)
    if sender not in all_components(f):
        raise ValueError(f"sender {sender.name!r} is not in this model ({f.n_layers} layers, "
                         f"{f.n_heads} heads)")
    if receiver == "logits":
        if receiver_input is not None:
            raise ValueError("receiver_input is only meaningful for a head receiver")
        return
    r = Component.parse(receiver)
    if r.kind != "head":
        raise ValueError(f"receiver must be 'logits' or a head such as 'L1H0', got {receiver!r}")
    if r not in all_components(f, "head"):
        raise ValueError(f"receiver {r.name!r} is not in this model")
    if receiver_input not in ("q", "k", "v"):
        raise ValueError(f"receiver_input must be 'q', 'k' or 'v' for a head receiver, got "
                         f"{receiver_input!r}")
    if r.layer <= sender.layer:
        raise ValueError(f"receiver {r.name} must sit in a later layer than sender "
                         f"{sender.name}")
    if receiver_input in ("k", "v") and f.n_kv_heads != f.n_heads:
        raise ValueError("k/v receivers are not defined for grouped-query attention")


def sweep_paths(
    model: HookedModel, pairs: PromptPairs, metric: AnswerMetric, *,
    receiver: str | Component = "logits", receiver_input: Input | None = None,
    senders: list[str | Component] | None = None, direction: Direction = "denoise",
    engine: Literal["auto", "fast", "hooks"] = "auto",
) -> pd.DataFrame:
    """Path-patching effect of each sender on one receiver: a tidy table with the mean
    patched metric (`value`), its std over prompts and the normalized effect (1 = clean)."""
    contrast = Contrast(pairs, metric, direction)
    contrast.check(model)
    receiver = receiver if receiver == "logits" else Component.parse(receiver)
    senders = [Component.parse(s) for s in senders] if senders is not None else \
        senders_for(model, receiver)
    for s in senders:
        _check(model, s, receiver, receiver_input)
    weights = engine_weights(model, engine)
    base_tokens, donor_tokens = contrast.tokens(model)
    clean_score, corrupt_score = (s.mean().item() for s in contrast.baselines(model))
    if weights is not None:
        base, donor, _, _ = contrast.traces(weights, base_tokens.device)
        values = [_fast_path(weights, base, donor, s, receiver, receiver_input, metric)
                  for s in senders]
    else:
        values = [_hook_path(model, base_tokens, donor_tokens, s, receiver, receiver_input,
                             metric) for s in senders]
    check_finite(torch.stack(values), "the path-patched runs")
    means = torch.stack([v.mean() for v in values]).cpu()
    normalized = normalized_effect(means, clean_score, corrupt_score)
    rows = []
    for s, v, mean, norm in zip(senders, values, means, normalized, strict=True):
        rows.append({"sender": s.name, "sender_kind": s.kind, "sender_layer": s.layer,
                     "sender_head": s.head, "receiver": str(receiver),
                     "receiver_input": receiver_input,
                     "value": float(mean), "std": float(v.std()) if v.numel() > 1 else 0.0,
                     "normalized": float(norm), "direction": direction, "metric": metric.label})
    return pd.DataFrame(rows)


# ---- fast engine ---------------------------------------------------------------------------
def _sender_delta(w: NativeWeights, base: fw.Trace, donor: fw.Trace,
                  sender: Component) -> Tensor:
    """[batch pos d_model]: what the sender writes in the donor run minus the base run."""
    layer, head = sender.layer, sender.head
    if sender.kind == "mlp":
        return donor.mlp_out[layer] - base.mlp_out[layer]
    return (donor.z[layer][:, :, head] - base.z[layer][:, :, head]) @ w.W_O[layer, head]


@torch.inference_mode()
def _fast_path(w: NativeWeights, base: fw.Trace, donor: fw.Trace, sender: Component,
               receiver: str | Component, receiver_input: Input | None,
               metric: AnswerMetric) -> Float[Tensor, " batch"]:
    delta = _sender_delta(w, base, donor, sender)
    hi = metric.pos
    if receiver == "logits":
        return metric.score(fw.unembed(w, base.resid_post[-1][:, hi] + delta[:, hi]))
    layer, head = receiver.layer, receiver.head
    sources = dict(zip("qkv", fw.qkv(w, layer, base.resid_pre[layer] + delta), strict=True))
    q, k, v = (base.get(n, layer).clone() for n in "qkv")
    picked = {"q": q, "k": k, "v": v}[receiver_input]
    picked[:, :, head] = sources[receiver_input][:, :, head]
    z = fw.attend(w, q, k, v, 0)[1]
    dz = z[:, :, head] - base.z[layer][:, :, head]
    resid = base.resid_mid[layer] + dz @ w.W_O[layer, head]
    return metric.score(fw.run_suffix(w, base, layer, "mid", resid[None], 0, hi)[0])


# ---- hook engine (any bridge) --------------------------------------------------------------
@torch.inference_mode()
def _hook_path(model: HookedModel, base_tokens: Tensor, donor_tokens: Tensor, sender: Component,
               receiver: str | Component, receiver_input: Input | None,
               metric: AnswerMetric) -> Float[Tensor, " batch"]:
    cfg = facts(model)
    kind, s_layer, s_head = sender.kind, sender.layer, sender.head
    names = {hook_name(site, layer) for layer in range(cfg.n_layers)
             for site in ("z",) + (() if cfg.attn_only else ("mlp_out",))}
    base_cache = capture_activations(model, base_tokens, names)
    donor_cache = capture_activations(model, donor_tokens, names)
    # run 1: every head and MLP from the sender's layer on frozen to its base value, except
    # the sender, which carries its donor value
    freeze = []
    for layer in range(s_layer, cfg.n_layers):
        freeze.append(Intervention("z", Replace(base_cache[hook_name("z", layer)]), layer))
        if kind == "head" and layer == s_layer:
            freeze.append(patch("z", layer, donor_cache, head=s_head))
        if not cfg.attn_only:
            source = donor_cache if (kind == "mlp" and layer == s_layer) else base_cache
            freeze.append(patch("mlp_out", layer, source))
    if receiver == "logits":
        return metric(run(model, base_tokens, freeze).logits)
    r_layer, r_head = receiver.layer, receiver.head
    r_name = hook_name(receiver_input, r_layer)
    captured = run(model, base_tokens, freeze, capture=[r_name]).acts
    # run 2: only the receiver's input is patched; everything else computes normally
    return metric(run(model, base_tokens,
                      [patch(receiver_input, r_layer, captured, head=r_head)]).logits)
