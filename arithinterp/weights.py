"""The fast engine's weight adapter: a model's weights in TransformerLens's shapes, for
engines that recompute the forward pass themselves (`core.fast`), and which models they
cover. Like `models`, it reads TransformerLens internals (the bridge's config and state-dict
keys) so that nothing else does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from arithinterp.models import HookedModel, facts


@dataclass(frozen=True)
class NativeWeights:
    """A model's weights in TransformerLens's shapes, detached, for engines that recompute
    parts of the forward pass themselves (`core.fast`).

    W_Q: [layer head d_model d_head]; W_K/W_V: [layer kv_head d_model d_head] (kv_head =
    head without grouped-query attention); W_O: [layer head d_head d_model]; W_in, W_gate:
    [layer d_model d_mlp] (W_gate None unless the MLP is gated: act(x W_gate) * (x W_in));
    W_out: [layer d_mlp d_model]; norm weights per layer. Positions are either learned
    (W_pos) or rotary (`rotary`: cos and sin tables [n_ctx d_head], rotating the two halves
    of each query and key, as Llama does).
    """

    W_E: torch.Tensor
    W_pos: torch.Tensor | None
    W_Q: torch.Tensor
    b_Q: torch.Tensor
    W_K: torch.Tensor
    b_K: torch.Tensor
    W_V: torch.Tensor
    b_V: torch.Tensor
    W_O: torch.Tensor
    b_O: torch.Tensor
    W_in: torch.Tensor | None
    b_in: torch.Tensor | None
    W_out: torch.Tensor | None
    b_out: torch.Tensor | None
    ln1: list[tuple[torch.Tensor, torch.Tensor | None]]
    ln2: list[tuple[torch.Tensor, torch.Tensor | None]]
    ln_final: tuple[torch.Tensor, torch.Tensor | None] | None
    W_U: torch.Tensor
    normalization: str | None  # "LN", "RMS" or None
    eps: float
    act_fn: str
    attn_scale: float
    b_U: torch.Tensor | None = None
    W_gate: torch.Tensor | None = None
    b_gate: torch.Tensor | None = None
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # (cos, sin) [n_ctx d_head]

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.W_Q.shape[1] // self.W_K.shape[1]


FAST_FAMILIES = ("native", "llama")  # what `native_weights` covers


def fast_engine_gap(model: HookedModel) -> str | None:
    """Why the recomputing engines do not cover this model (None: they do), from its config.

    Covered: models built here with learned positions (LayerNorm, RMSNorm or none), and
    Hugging Face Llama-family models wrapped by the bridge (rotary positions, RMSNorm, gated
    MLP, grouped-query attention; SmolLM2 is one), in any floating dtype. Not covered: native
    rotary models, parallel attention and MLP, soft caps, dynamic rotary scaling (its tables
    depend on the sequence length), other families."""
    cfg = model.cfg
    family = facts(model).family
    native = getattr(cfg, "architecture", None) == "TransformerLensNative"
    if family not in FAST_FAMILIES:
        return f"the {family} family"
    if (cfg.parallel_attn_mlp or getattr(cfg, "attn_scores_soft_cap", -1) > 0
            or getattr(cfg, "output_logits_soft_cap", -1) > 0
            or cfg.normalization_type not in ("LN", "RMS", None)):
        return "parallel attention and MLP, soft caps or this normalization"
    if native:
        if cfg.positional_embedding_type != "standard":
            return f"{cfg.positional_embedding_type} positions in a model built here"
        if (cfg.gated_mlp or cfg.n_key_value_heads not in (None, cfg.n_heads) or cfg.final_rms
                or "pos_embed.weight" not in model.state_dict()):
            return "this model's gated MLP, key/value heads or final norm"
        return None
    if (cfg.positional_embedding_type != "rotary" or not cfg.gated_mlp
            or cfg.normalization_type != "RMS" or cfg.attn_only
            or getattr(cfg, "rmsnorm_uses_offset", False)):
        return "a Llama without rotary positions, a gated MLP or RMSNorm"
    rotary = getattr(getattr(model, "rotary_emb", None), "_original_component", None)
    if rotary is None:
        return "a Llama whose rotary module the bridge does not expose"
    if "dynamic" in str(getattr(rotary, "rope_type", "default")):
        return "dynamic rotary scaling"
    return None


def native_weights(model: HookedModel) -> NativeWeights | None:
    """The weights of a model the recomputing engines cover (`fast_engine_gap`), or None
    for the others, which go through hooks."""
    if fast_engine_gap(model) is not None:
        return None
    cfg = model.cfg
    native = getattr(cfg, "architecture", None) == "TransformerLensNative"
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    n_layers, n_heads, d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
    n_kv = cfg.n_key_value_heads or n_heads
    norm = cfg.normalization_type

    def per_layer(name: str) -> torch.Tensor:
        return torch.stack([sd[f"blocks.{i}.{name}"] for i in range(n_layers)])

    def bias(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A per-layer bias, or zeros where the model has none (Llama's projections)."""
        if f"blocks.0.{name}" in sd:
            return per_layer(name).view(n_layers, *shape)
        return sd["embed.weight"].new_zeros(n_layers, *shape)

    def heads_in(name: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = per_layer(f"attn.{name}.weight")  # [layer, head*d_head, d_model]
        return (w.view(n_layers, n, d_head, -1).transpose(-1, -2),
                bias(f"attn.{name}.bias", (n, d_head)))

    def norm_of(prefix: str) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        if norm is None:
            return None
        return sd[f"{prefix}.weight"], sd.get(f"{prefix}.bias")

    W_Q, b_Q = heads_in("q", n_heads)
    W_K, b_K = heads_in("k", n_kv)
    W_V, b_V = heads_in("v", n_kv)
    W_O = per_layer("attn.o.weight").view(n_layers, -1, n_heads, d_head).permute(0, 2, 3, 1)
    mlp = not cfg.attn_only
    d_model = cfg.d_model
    d_mlp = cfg.d_mlp
    scale = cfg.attn_scale if cfg.use_attn_scale and cfg.attn_scale > 0 else d_head**0.5
    return NativeWeights(
        W_E=sd["embed.weight"], W_pos=sd.get("pos_embed.weight") if native else None,
        W_Q=W_Q, b_Q=b_Q, W_K=W_K, b_K=b_K, W_V=W_V, b_V=b_V, W_O=W_O,
        b_O=bias("attn.o.bias", (d_model,)),
        W_in=per_layer("mlp.in.weight").transpose(1, 2) if mlp else None,
        b_in=bias("mlp.in.bias", (d_mlp,)) if mlp else None,
        W_out=per_layer("mlp.out.weight").transpose(1, 2) if mlp else None,
        b_out=bias("mlp.out.bias", (d_model,)) if mlp else None,
        ln1=[norm_of(f"blocks.{i}.ln1") for i in range(n_layers)] if norm else [],
        ln2=[norm_of(f"blocks.{i}.ln2") for i in range(n_layers)] if norm and mlp else [],
        ln_final=norm_of("ln_final"),
        W_U=sd["unembed.weight"].T, normalization=norm, eps=float(cfg.eps),
        act_fn=cfg.act_fn, attn_scale=float(scale), b_U=sd.get("unembed.bias"),
        W_gate=per_layer("mlp.gate.weight").transpose(1, 2) if cfg.gated_mlp else None,
        b_gate=bias("mlp.gate.bias", (d_mlp,)) if cfg.gated_mlp else None,
        rotary=None if native else _rotary_tables(model, cfg.n_ctx, d_head),
    )


@torch.inference_mode()
def _rotary_tables(model: HookedModel, n_ctx: int, d_head: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [n_ctx d_head] of a wrapped Hugging Face model, from its own rotary
    module (so any static scaling its config asks for is the one it runs), in the dtype of
    the model's weights, as it applies them."""
    rotary = model.rotary_emb._original_component
    x = model.W_E.new_zeros(1, n_ctx, d_head)
    cos, sin = rotary(x, torch.arange(n_ctx, device=x.device)[None])
    return cos[0].detach().to(x.dtype), sin[0].detach().to(x.dtype)
