"""Models: specs, building TransformerLens bridges, and the adapter the rest of the package
sees them through (checkpoints and the zoo: `checkpoints`; pretrained LLMs: `pretrained`).

Every TransformerLens-specific detail lives here and in `weights` (the fast engine's
weights). Elsewhere a model is a "hooked model" (a ``TransformerBridge`` called on token
ids, with the classic hook names of `components`) plus what this module says about it:
`facts` (layers, heads, widths, the architecture family), `readout` (final norm and
unembedding), `head_out_weights`, `embedding` and, for engines that recompute the forward
pass, `weights.native_weights`. A `LoadedModel` carries the tokenizer the model was trained
with, so no analysis assumes the character vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from arithinterp.components import Component
from arithinterp.fields import check_bool, check_choice, check_int, described
from arithinterp.tasks import Task

# A TransformerBridge; typed as its base class so importing this module stays cheap.
HookedModel = torch.nn.Module

Device = str  # "auto", "cpu", "cuda", "cuda:1", ...


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a from-scratch transformer; vocabulary and context come from the task."""

    n_layers: int = described(2, "Transformer layers.")
    d_model: int = described(128, "Residual stream width.")
    n_heads: int = described(4, "Attention heads per layer.")
    d_head: int | None = None  # None: d_model // n_heads
    d_mlp: int | None = None  # None: 4 * d_model (ignored when attn_only)
    attn_only: bool = False
    act_fn: Literal["gelu", "relu", "silu", "gelu_new"] = "gelu"
    normalization: Literal["LN", "RMS"] | None = "LN"
    positional: Literal["standard", "rotary"] = "standard"
    seed: int = described(0, "Weight-initialisation seed.")

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads"):
            check_int(name, getattr(self, name), min=1)
        for name in ("d_head", "d_mlp"):
            check_int(name, getattr(self, name), min=1, optional=True)
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads}) unless d_head is given")
        check_bool("attn_only", self.attn_only)
        check_choice("act_fn", self.act_fn, ("gelu", "relu", "silu", "gelu_new"))
        check_choice("normalization", self.normalization, ("LN", "RMS", None))
        check_choice("positional", self.positional, ("standard", "rotary"))
        check_int("seed", self.seed)

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    @property
    def mlp_dim(self) -> int:
        return self.d_mlp or 4 * self.d_model


# ---- the adapter ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFacts:
    """What analyses need to know about a model's architecture (see `facts`)."""

    family: str  # "native" (built here), or the Hugging Face architecture ("llama", "gpt2")
    n_layers: int
    n_heads: int
    n_kv_heads: int  # = n_heads without grouped-query attention
    d_model: int
    d_head: int
    d_mlp: int | None  # None for attention-only models
    d_vocab: int
    n_ctx: int
    attn_only: bool
    normalization: str | None  # "LN", "RMS" or None
    positional: str  # "standard" (learned), "rotary", ...
    gated_mlp: bool
    act_fn: str


def facts(model: HookedModel) -> ModelFacts:
    """The architecture facts of a bridge (native or wrapped Hugging Face)."""
    cfg = model.cfg
    arch = getattr(cfg, "architecture", None)
    family = "native" if arch == "TransformerLensNative" else str(
        getattr(cfg, "original_architecture", None) or arch or "unknown").lower().removesuffix(
        "forcausallm").removesuffix("lmheadmodel")
    kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    return ModelFacts(
        family=family, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=kv,
        d_model=cfg.d_model, d_head=cfg.d_head, d_mlp=None if cfg.attn_only else cfg.d_mlp,
        d_vocab=cfg.d_vocab, n_ctx=cfg.n_ctx, attn_only=bool(cfg.attn_only),
        normalization=cfg.normalization_type, positional=cfg.positional_embedding_type,
        gated_mlp=bool(getattr(cfg, "gated_mlp", False)), act_fn=str(cfg.act_fn))


@runtime_checkable
class Tokenizer(Protocol):
    """What a model's tokenizer offers the rest of the package (`tasks.vocab.Vocab` is one)."""

    size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids) -> str: ...

    def token_strings(self, ids: Tensor) -> list[str]: ...

    def digit_ids(self) -> Tensor: ...


@dataclass(frozen=True)
class LoadedModel:
    """A hooked model with the specs it was built from (task=None for pretrained LLMs), its
    tokenizer and where it came from."""

    model: HookedModel
    spec: ModelSpec | None
    task: Task | None
    tokenizer: Tokenizer | None = None
    path: Path | None = None  # the checkpoint folder (None for a pretrained model)
    source: str = ""  # 'zoo:add3-reversed', a folder, a pretrained name

    @property
    def facts(self) -> ModelFacts:
        return facts(self.model)

    def with_task(self, task: Task) -> LoadedModel:
        """The same model analysed on another task of the same vocabulary and context."""
        if task.vocab != (self.task.vocab if self.task else task.vocab):
            raise ValueError(f"task {task.name} has another vocabulary than the model's")
        if context_length(task) > self.facts.n_ctx:
            raise ValueError(f"task {task.name} needs {context_length(task)} positions; the "
                             f"model has {self.facts.n_ctx}")
        return replace(self, task=task, tokenizer=task.vocab)


@dataclass(frozen=True)
class Readout:
    """The map from the final residual stream to logits: norm (kind, weight, bias), W_U, b_U."""

    norm: str | None
    norm_weight: Tensor | None  # effective weight (RMSNorm offsets folded in)
    norm_bias: Tensor | None
    W_U: Tensor  # [d_model d_vocab]
    b_U: Tensor  # [d_vocab]


def readout(model: HookedModel) -> Readout:
    """The model's final norm and unembedding (views of its weights)."""
    kind = model.cfg.normalization_type
    weight = bias = None
    if kind is not None:
        norm = model.ln_final
        weight = norm.weight + 1 if getattr(model.cfg, "rmsnorm_uses_offset", False) \
            else norm.weight
        bias = getattr(norm, "bias", None) if kind == "LN" else None
    return Readout(kind, weight, bias, model.W_U, model.b_U)


def run_readout(
    model: HookedModel, resid: Float[Tensor, "*rest d_model"]
) -> Float[Tensor, "*rest d_vocab"]:
    """Logits of a residual stream through the model's own final norm (fresh scale) and
    unembedding (the logit lens)."""
    return model.unembed(model.ln_final(resid))


def head_out_weights(model: HookedModel) -> tuple[Tensor, Tensor]:
    """W_O [layer head d_head d_model] and b_O [layer d_model] (views of the weights; zeros
    for a model whose output projections have no bias, as Llama's)."""
    W_O = model.W_O
    try:
        return W_O, model.b_O
    except AttributeError:
        return W_O, W_O.new_zeros(W_O.shape[0], W_O.shape[-1])


def position_embedding(model: HookedModel) -> torch.nn.Parameter:
    """W_pos [n_ctx d_model] of a model with learned positions (the parameter itself)."""
    params = parameters_by_key(model)
    if "pos_embed.weight" not in params:
        raise ValueError("this model has no learned position embedding")
    return params["pos_embed.weight"]


def close_position_gap(model: HookedModel, start: int, gap: int) -> None:
    """Fold a gap into the position embedding: position p >= start takes the embedding of
    p + gap, so a model trained with ids skipping `gap` positions after `start` runs on
    plain ids 0, 1, 2, ..."""
    w = position_embedding(model)
    n = w.shape[0]
    if not 0 <= start <= n or not 0 <= gap <= n - start:
        raise ValueError(f"cannot close a gap of {gap} after position {start} of {n}")
    with torch.no_grad():
        w[start : n - gap] = w[start + gap :].clone()


def embedding(model: HookedModel) -> Tensor:
    """W_E [d_vocab d_model] (a view of the weights)."""
    return model.W_E


def component_slices(model: HookedModel, component: Component) -> dict[str, tuple[slice, ...]]:
    """The entries of the model's weights that belong to a component, as {state-dict key:
    index}: a head's rows of W_Q (and b_Q), its key/value head's rows of W_K, W_V (under
    grouped-query attention the shared KV head of its group) and its columns of W_O; an MLP's
    input, gate and output weights and biases; an attention layer's q, k, v, o weights and
    biases. b_O belongs to no single head (it is the layer's), so a head does not own it."""
    f = facts(model)
    keys = set(model.state_dict())
    L, d = component.layer, f.d_head
    pre = f"blocks.{L}"
    if component.kind == "head":
        h = component.head
        g = h // (f.n_heads // f.n_kv_heads)
        rows = {"q": slice(h * d, (h + 1) * d), "k": slice(g * d, (g + 1) * d),
                "v": slice(g * d, (g + 1) * d)}
        out = {}
        for name, sl in rows.items():
            for part in ("weight", "bias"):
                if f"{pre}.attn.{name}.{part}" in keys:
                    out[f"{pre}.attn.{name}.{part}"] = (sl,)
        out[f"{pre}.attn.o.weight"] = (slice(None), slice(h * d, (h + 1) * d))
        return out
    if component.kind in ("mlp", "attn"):
        prefix = f"{pre}.{component.kind}."
        owned = {k: (slice(None),) for k in keys if k.startswith(prefix)
                 and not k.split(prefix, 1)[1].startswith(("hook", "ln"))}
        if not owned:
            raise ValueError(f"the model has no weights for {component.name}")
        return owned
    raise ValueError(f"{component.name} has no weights of its own to train (residual stream)")


def parameters_by_key(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The model's parameters under their state-dict keys (the bridge's named_parameters()
    uses internal names; the tensors are the same objects)."""
    by_id = {id(p): p for p in model.parameters()}
    return {k: by_id[id(v)] for k, v in model.state_dict(keep_vars=True).items()
            if id(v) in by_id}


def resolve_device(device: Device = "auto") -> torch.device:
    """'auto' picks cuda when available, else cpu; other names are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
    return dev


def device_of(model: HookedModel) -> torch.device:
    """Where the model's weights are."""
    return next(model.parameters()).device


def context_length(task: Task) -> int:
    """Positions a model of this task needs: the full CoT even when a curriculum trims it."""
    if task.format == "cot" and task.cot_tokens_removed:
        return replace(task, cot_tokens_removed=0).seq_len
    return task.seq_len


def build_model(spec: ModelSpec, task: Task, device: Device = "cpu") -> HookedModel:
    """A freshly initialised TransformerBridge (boot_native), seeded by spec.seed."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(
        d_model=spec.d_model, d_head=spec.head_dim, n_layers=spec.n_layers,
        n_ctx=context_length(task), n_heads=spec.n_heads, d_vocab=task.vocab.size,
        d_mlp=spec.mlp_dim, act_fn=spec.act_fn, normalization_type=spec.normalization,
        attn_only=spec.attn_only, positional_embedding_type=spec.positional, seed=spec.seed,
    )
    model = TransformerBridge.boot_native(cfg)
    # The bridge's default norm is an op-by-op Python LayerNorm (~15% of a training step);
    # the native path runs the fused kernel and still feeds hook_scale / hook_normalized,
    # and an edit to either falls back to the Python path, so hooks behave the same.
    for module in model.modules():
        if hasattr(module, "use_native_layernorm_autograd"):
            module.use_native_layernorm_autograd = True
    return move_to(model, device)


def move_to(model: HookedModel, device: Device) -> HookedModel:
    """Move a model to a device (a no-op, and silent, when it is already there)."""
    dev = resolve_device(device)
    return model if device_of(model) == dev else model.to(dev)
