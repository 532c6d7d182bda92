"""Models: specs, building TransformerLens bridges, checkpoints, the zoo (pretrained LLMs:
`pretrained`), and the adapter the rest of the package sees them through.

Every TransformerLens-specific detail lives here. Elsewhere a model is a "hooked model" (a
``TransformerBridge`` called on token ids, with the classic hook names of `components`)
plus what this module says about it: `facts` (layers, heads, widths, the architecture
family), `readout` (final norm and unembedding), `head_out_weights`, `embedding` and, for
engines that recompute the forward pass, `native_weights`. A `LoadedModel` carries the
tokenizer the model was trained with, so no analysis assumes the character vocabulary.

A checkpoint is a directory with ``model.safetensors`` (the state dict, familiar keys such
as ``blocks.0.attn.q.weight``) and ``config.json`` (schema version, ModelSpec, task spec and
vocabulary). A run's ``model/`` folder is one. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import Tensor

from arithinterp import schema
from arithinterp.components import Component
from arithinterp.fields import check_bool, check_choice, check_int
from arithinterp.runs import atomic_write_bytes, atomic_write_text, safetensors_bytes
from arithinterp.tasks import Task

# A TransformerBridge; typed as its base class so importing this module stays cheap.
HookedModel = torch.nn.Module

ZOO_DIR = Path(__file__).parent / "zoo"
Device = str  # "auto", "cpu", "cuda", "cuda:1", ...


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a from-scratch transformer; vocabulary and context come from the task."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int | None = None  # None: d_model // n_heads
    d_mlp: int | None = None  # None: 4 * d_model (ignored when attn_only)
    attn_only: bool = False
    act_fn: Literal["gelu", "relu", "silu", "gelu_new"] = "gelu"
    normalization: Literal["LN", "RMS"] | None = "LN"
    positional: Literal["standard", "rotary"] = "standard"
    seed: int = 0

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


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under their familiar names, detached, contiguous, on the CPU."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


# ---- checkpoints ---------------------------------------------------------------------------
def save_model(model: HookedModel, spec: ModelSpec, task: Task, path: str | Path) -> Path:
    """Write a checkpoint directory (weights first, config last, each atomically)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / schema.WEIGHTS.file, safetensors_bytes(state_tensors(model)))
    config = {"schema_version": schema.CHECKPOINT_SCHEMA, "model": asdict(spec),
              "task": asdict(task), "vocab": list(task.vocab.tokens)}
    atomic_write_text(path / schema.CHECKPOINT_CONFIG.file, json.dumps(config, indent=2) + "\n")
    return path


def read_checkpoint_config(path: str | Path) -> tuple[ModelSpec, Task]:
    """The ModelSpec and task (a TaskSpec or a ModularTask) recorded in a checkpoint."""
    cfg_path = Path(path) / schema.CHECKPOINT_CONFIG.file
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a model checkpoint: "
                                f"{schema.CHECKPOINT_CONFIG.file} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from e
    expected = {"schema_version", "model", "task", "vocab"}
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_path}: expected an object with keys {sorted(expected)}")
    if set(config) != expected:
        raise ValueError(f"{cfg_path}: unknown keys {sorted(set(config) - expected)}, missing "
                         f"keys {sorted(expected - set(config))}")
    version = config["schema_version"]
    if isinstance(version, bool) or version != schema.CHECKPOINT_SCHEMA:
        raise ValueError(f"{cfg_path}: checkpoint schema_version {version!r} is not the one "
                         f"this arithinterp reads ({schema.CHECKPOINT_SCHEMA})")
    spec = schema.from_json(ModelSpec, config["model"], f"{cfg_path} 'model'")
    task = schema.from_json(Task, config["task"], f"{cfg_path} 'task'")
    if config["vocab"] != list(task.vocab.tokens):
        raise ValueError(f"{cfg_path}: the checkpoint's vocabulary differs from the one this "
                         f"arithinterp uses for task {task.name}")
    return spec, task


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; anything else (a pickle, a truncated file) is refused."""
    path = Path(path)
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a valid safetensors file ({e}); checkpoints are never "
                         "unpickled") from e


def _check_finite(weights: dict[str, Tensor], where: Path) -> None:
    bad = [k for k, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"{where} holds non-finite weights (NaN or inf) in {len(bad)} tensors, "
                         f"e.g. {bad[:3]}: training diverged; this checkpoint is refused")


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A checkpoint directory from a zoo name, a run directory (its model/) or a folder."""
    p = Path(name_or_path)
    if (p / schema.MANIFEST).is_file():
        p = p / schema.MODEL
        if not (p / schema.CHECKPOINT_CONFIG.file).is_file():
            raise ValueError(f"run {name_or_path} holds no model checkpoint "
                             f"({p / schema.CHECKPOINT_CONFIG.file} is missing)")
        return p
    if (p / schema.CHECKPOINT_CONFIG.file).is_file():
        return p
    if str(name_or_path) in zoo_names():
        return ZOO_DIR / str(name_or_path) / schema.MODEL
    raise ValueError(f"{str(name_or_path)!r} is neither a checkpoint directory nor a zoo model "
                     f"nor a run (shipped: {', '.join(zoo_names()) or 'none'})")


def describe_source(path: Path) -> str:
    """A portable name for where a checkpoint lives: 'zoo:add3-reversed' or the folder."""
    path = Path(path).resolve()
    if path.parent.parent == ZOO_DIR.resolve() and path.name == schema.MODEL:
        return f"zoo:{path.parent.name}"
    return str(path)


def load_model(source: str | Path, device: Device = "cpu") -> LoadedModel:
    """Rebuild a model from a zoo name, a run directory or a checkpoint folder."""
    path = resolve_model_path(source)
    spec, task = read_checkpoint_config(path)
    weights = read_weights(path / schema.WEIGHTS.file)
    _check_finite(weights, path / schema.WEIGHTS.file)
    model = build_model(spec, task, "cpu")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path / schema.WEIGHTS.file} does not match the model in "
                         f"{schema.CHECKPOINT_CONFIG.file}: "
                         f"{str(e).splitlines()[-1].strip()}") from e
    model.eval()
    return LoadedModel(move_to(model, device), spec, task, task.vocab, path,
                       describe_source(path))


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


# ---- the zoo -------------------------------------------------------------------------------
def zoo_names() -> list[str]:
    """Names of the models shipped in arithinterp/zoo (each a read-only run)."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir()
                  if (p / schema.MODEL / schema.CHECKPOINT_CONFIG.file).is_file())
