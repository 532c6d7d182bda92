"""A transformer forward pass written against `NativeWeights`, able to resume mid-network.

Exact patching only needs the part of the network a patch can change: the layers from the
patched one on, at positions from the first patched one up to the metric's position
(attention is causal), with keys and values of earlier positions taken from the base run.
`run_trace` computes and keeps every activation of a full run; `run_suffix` recomputes
from a given layer on, for a stack of patched variants at once, and returns only the
logits at the last position it was given; `run_intervened` is a full run carrying
`core.interventions` values, the fast engine's side of what `core.engine` runs through hooks.
All follow the model operation by operation —
TransformerLens's native models, and Hugging Face's Llama (rotary queries and keys, RMSNorm,
gated MLP, key/value heads shared by groups of query heads) — so results agree with the
bridge's hooks to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.core.interventions import Intervention
from arithinterp.weights import NativeWeights

Stage = Literal["pre", "mid"]
ACTIVATIONS = {"gelu": F.gelu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "relu": F.relu, "silu": F.silu}


@dataclass(frozen=True)
class Trace:
    """Every activation of one run, per layer: [batch pos ...] tensors."""

    resid_pre: list[Tensor]  # [batch pos d_model]
    q: list[Tensor]  # [batch pos head d_head]
    k: list[Tensor]
    v: list[Tensor]
    pattern: list[Tensor]  # [batch head query key]
    z: list[Tensor]  # [batch pos head d_head]
    attn_out: list[Tensor]  # [batch pos d_model]
    resid_mid: list[Tensor]
    mlp_out: list[Tensor]
    resid_post: list[Tensor]
    logits: Tensor  # [batch d_vocab]: at the last position (the only one engines read)

    def get(self, site: str, layer: int) -> Tensor:
        """Activation of `site` ('z', 'resid_pre', ...) at `layer`."""
        return getattr(self, site)[layer]


def normalize(w: NativeWeights, x: Float[Tensor, "... d_model"],
              params: tuple[Tensor, Tensor | None] | None) -> Float[Tensor, "... d_model"]:
    """The model's LayerNorm / RMSNorm (or identity)."""
    if w.normalization is None or params is None:
        return x
    weight, bias = params
    if w.normalization == "LN":
        return F.layer_norm(x, (x.shape[-1],), weight, bias, w.eps)
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + w.eps))


def _norm(w: NativeWeights, kind: str, layer: int) -> tuple[Tensor, Tensor | None] | None:
    table = w.ln1 if kind == "ln1" else w.ln2
    return table[layer] if table else None


def qkv(w: NativeWeights, layer: int, resid: Float[Tensor, "*b pos d_model"], offset: int = 0):
    """Queries, keys and values [*b pos head d_head] of a residual stream at `layer` whose
    first position is `offset`: rotary models rotate queries and keys by position, and under
    grouped-query attention each query head gets its key/value head's keys and values."""
    x = normalize(w, resid, _norm(w, "ln1", layer))
    n_heads, d_model, d_head = w.W_Q.shape[1:]
    n_kv = w.W_K.shape[1]
    # one GEMM for all three: [d_model, (head + 2 kv_head) * d_head]
    weight = torch.cat([W[layer].permute(1, 0, 2).reshape(d_model, -1)
                        for W in (w.W_Q, w.W_K, w.W_V)], dim=1)
    bias = torch.cat([b[layer].reshape(-1) for b in (w.b_Q, w.b_K, w.b_V)])
    q, k, v = (x @ weight + bias).split([n_heads * d_head, n_kv * d_head, n_kv * d_head], -1)
    q, k, v = q.unflatten(-1, (n_heads, d_head)), *(t.unflatten(-1, (n_kv, d_head))
                                                   for t in (k, v))
    if w.rotary is not None:
        q, k = rotate(w, q, offset), rotate(w, k, offset)
    if w.group > 1:
        k, v = k.repeat_interleave(w.group, dim=-2), v.repeat_interleave(w.group, dim=-2)
    return q, k, v


def rotate(w: NativeWeights, x: Float[Tensor, "*b pos head d_head"], offset: int
           ) -> Float[Tensor, "*b pos head d_head"]:
    """Rotary position embedding of positions offset.. (the two halves of d_head rotate
    together, as in Llama: x cos + rotate_half(x) sin)."""
    cos, sin = w.rotary
    n, half = x.shape[-3], x.shape[-1] // 2
    cos, sin = cos[offset : offset + n, None, :], sin[offset : offset + n, None, :]
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def attend(w: NativeWeights, q: Tensor, k: Tensor, v: Tensor, q_offset: int):
    """Causal attention of queries at positions q_offset.. over keys 0..: (pattern, z).

    q, k, v: [*b pos head d_head]; pattern: [*b head qpos kpos]; z: [*b qpos head d_head].
    """
    qh, kh, vh = (t.transpose(-3, -2) for t in (q, k, v))  # [*b head pos d_head]
    scores = (qh @ kh.transpose(-1, -2)) / w.attn_scale
    qpos = torch.arange(q.shape[-3], device=q.device)[:, None] + q_offset
    kpos = torch.arange(k.shape[-3], device=q.device)[None, :]
    masked = kpos > qpos
    pattern = scores.masked_fill(masked, float("-inf")).softmax(-1).masked_fill(masked, 0.0)
    return pattern, (pattern @ vh).transpose(-3, -2)


def head_out(w: NativeWeights, layer: int, z: Float[Tensor, "*b pos head d_head"]):
    """Attention output [*b pos d_model] from z (all heads summed, plus b_O)."""
    return z.flatten(-2) @ w.W_O[layer].flatten(0, 1) + w.b_O[layer]


def mlp(w: NativeWeights, layer: int, resid_mid: Float[Tensor, "*b pos d_model"]):
    """MLP output [*b pos d_model] (zeros for attention-only models)."""
    if w.W_in is None:
        return torch.zeros_like(resid_mid)
    x = normalize(w, resid_mid, _norm(w, "ln2", layer))
    if w.W_gate is None:
        hidden = ACTIVATIONS[w.act_fn](x @ w.W_in[layer] + w.b_in[layer])
    else:  # gated: act(x W_gate) * (x W_in)
        hidden = (ACTIVATIONS[w.act_fn](x @ w.W_gate[layer] + w.b_gate[layer])
                  * (x @ w.W_in[layer] + w.b_in[layer]))
    return hidden @ w.W_out[layer] + w.b_out[layer]


def unembed(w: NativeWeights, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Logits from the final residual stream."""
    logits = normalize(w, resid, w.ln_final) @ w.W_U
    return logits if w.b_U is None else logits + w.b_U


FAST_SITES = ("resid_pre", "q", "k", "v", "pattern", "z", "attn_out", "resid_mid", "mlp_out",
              "resid_post")


@torch.inference_mode()
def run_trace(w: NativeWeights, tokens: Int[Tensor, "batch pos"]) -> Trace:
    """A full forward pass keeping every activation (logits at the last position only: an
    LLM's unembedding costs several layers' worth of compute per position)."""
    return _forward(w, tokens, {})


def run_intervened(w: NativeWeights, tokens: Int[Tensor, "batch pos"],
                   interventions: Sequence[Intervention]) -> Trace:
    """`run_trace` with interventions applied where the hook engine applies them (each
    activation in the trace is the intervened one); the grad mode is the caller's, so a
    trainable basis gets gradients. As in TransformerLens's bridge, a value set at
    resid_mid reaches the MLP's input only. Sites outside `FAST_SITES`, queries and keys of
    rotary models and keys and values under grouped-query attention are refused (their
    hooks hold other tensors than this forward computes)."""
    by_site: dict[tuple[str, int], list[Intervention]] = {}
    for item in interventions:
        if item.site not in FAST_SITES:
            raise ValueError(f"the fast engine intervenes at {FAST_SITES}, not {item.site!r}")
        if item.site in ("q", "k") and w.rotary is not None:
            raise ValueError(f"the fast engine does not intervene on {item.site} of a rotary "
                             "model (the hook sees it before rotation): use the hook engine")
        if item.site in ("k", "v") and w.group > 1:
            raise ValueError(f"{item.site} belongs to key/value heads shared by query heads "
                             "here: use the hook engine")
        by_site.setdefault((item.site, item.layer), []).append(item)
    return _forward(w, tokens, by_site)


def _forward(w: NativeWeights, tokens: Int[Tensor, "batch pos"],
             by_site: dict[tuple[str, int], list[Intervention]]) -> Trace:
    def at(site: str, layer: int, act: Tensor) -> Tensor:
        items = by_site.get((site, layer))
        if not items:
            return act
        act = act.clone()
        for item in items:
            idx = item.index()
            act[idx] = item.op.apply(act[idx])
        return act

    n_layers = w.W_Q.shape[0]
    acts: dict[str, list[Tensor]] = {name: [] for name in Trace.__dataclass_fields__
                                     if name != "logits"}
    resid = w.W_E[tokens]
    if w.W_pos is not None:
        resid = resid + w.W_pos[: tokens.shape[1]]
    for layer in range(n_layers):
        resid = at("resid_pre", layer, resid)
        q, k, v = (at(n, layer, t) for n, t in zip("qkv", qkv(w, layer, resid), strict=True))
        pattern, z = attend(w, q, k, v, 0)
        if ("pattern", layer) in by_site:
            pattern = at("pattern", layer, pattern)
            z = (pattern @ v.transpose(-3, -2)).transpose(-3, -2)
        z = at("z", layer, z)
        attn_out = at("attn_out", layer, head_out(w, layer, z))
        mid = resid + attn_out
        mlp_in = at("resid_mid", layer, mid)
        mlp_out = at("mlp_out", layer, mlp(w, layer, mlp_in))
        post = at("resid_post", layer, mid + mlp_out)
        for name, val in (("resid_pre", resid), ("q", q), ("k", k), ("v", v),
                          ("pattern", pattern), ("z", z), ("attn_out", attn_out),
                          ("resid_mid", mlp_in), ("mlp_out", mlp_out), ("resid_post", post)):
            acts[name].append(val)
        resid = post
    return Trace(**acts, logits=unembed(w, resid[:, -1]))


def _expand(t: Tensor, n_var: int) -> Tensor:
    return t.expand(n_var, *t.shape)


def attend_variants(w: NativeWeights, q: Tensor, k_new: Tensor, v_new: Tensor, base_k: Tensor,
                    base_v: Tensor, lo: int, q_offset: int) -> Tensor:
    """z [variant batch qpos head d_head] for variants whose keys and values equal the base
    run's except at positions lo.. (k_new, v_new: [variant batch n head d_head]).

    Scores against the shared base keys fold the variants into the query axis, so the base
    keys and values are never copied once per variant.
    """
    n_var, batch, n_q, n_heads, d_head = q.shape
    n, end = base_k.shape[1], lo + k_new.shape[2]
    folded = q.permute(1, 3, 0, 2, 4).reshape(batch, n_heads, n_var * n_q, d_head)
    scores = (folded @ base_k.permute(0, 2, 3, 1)).view(batch, n_heads, n_var, n_q, n)
    scores = scores.permute(2, 0, 1, 3, 4)  # [variant batch head qpos kpos]
    new = torch.einsum("vbqhd,vbkhd->vbhqk", q, k_new)
    scores = torch.cat([scores[..., :lo], new, scores[..., end:]], dim=-1) / w.attn_scale
    qpos = torch.arange(n_q, device=q.device)[:, None] + q_offset
    masked = torch.arange(n, device=q.device)[None, :] > qpos
    pattern = scores.masked_fill(masked, float("-inf")).softmax(-1).masked_fill(masked, 0.0)
    shared = pattern.clone()
    shared[..., lo:end] = 0.0
    shared = shared.permute(1, 2, 0, 3, 4).reshape(batch, n_heads, n_var * n_q, n)
    z = (shared @ base_v.transpose(1, 2)).view(batch, n_heads, n_var, n_q, d_head)
    return z.permute(2, 0, 3, 1, 4) + torch.einsum("vbhqk,vbkhd->vbqhd", pattern[..., lo:end],
                                                    v_new)


@torch.inference_mode()
def run_suffix(
    w: NativeWeights, base: Trace, layer: int, stage: Stage,
    resid: Float[Tensor, "variant batch pos d_model"], lo: int, hi: int,
) -> Float[Tensor, "variant batch d_vocab"]:
    """Logits at position hi of patched variants, resuming at `layer` (before its attention
    for stage 'pre', before its MLP for 'mid').

    `resid` holds each variant's residual stream at the positions its patch changed,
    lo..lo+n-1; every other position starts as in the base run. Only changed positions are
    recomputed in the first layer; after each attention layer every position up to hi may
    have changed. Only position hi reaches the logits, so the final layer computes its query,
    its MLP and everything after at that position alone.
    """
    n_layers, n_var = w.W_Q.shape[0], resid.shape[0]
    c_hi = lo + resid.shape[2] - 1  # last changed position
    if stage == "mid":
        if layer == n_layers - 1:
            resid = resid[:, :, hi - lo : hi - lo + 1]  # caller guarantees lo <= hi <= c_hi
        resid = resid + mlp(w, layer, resid)
        layer += 1
    for ell in range(layer, n_layers):
        q, k, v = qkv(w, ell, resid, lo)
        if c_hi < hi:  # later positions keep their base inputs but may attend to changed ones
            q = torch.cat([q, _expand(base.q[ell][:, c_hi + 1 : hi + 1], n_var)], dim=2)
            resid = torch.cat([resid, _expand(base.resid_pre[ell][:, c_hi + 1 : hi + 1], n_var)],
                              dim=2)
        q_offset = lo
        if ell == n_layers - 1:
            q, resid, q_offset = q[:, :, -1:], resid[:, :, -1:], hi
        z = attend_variants(w, q, k, v, base.k[ell][:, : hi + 1], base.v[ell][:, : hi + 1], lo,
                            q_offset)
        mid = resid + head_out(w, ell, z)
        resid = mid + mlp(w, ell, mid)
        c_hi = hi
    return unembed(w, resid[:, :, -1])
