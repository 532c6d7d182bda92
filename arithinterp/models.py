"""Models: specs, building TransformerLens bridges, checkpoints, the zoo, pretrained loaders.

Every TransformerLens-specific detail lives here, so the rest of the package sees a
"hooked model": a ``TransformerBridge`` called on token ids, with the classic hook names
(``blocks.0.attn.hook_z``) for ``run_with_cache`` / ``run_with_hooks`` / ``hooks``.

A checkpoint is a directory with ``model.safetensors`` (the state dict, familiar keys such
as ``blocks.0.attn.q.weight``) and ``config.json`` (schema version, ModelSpec, TaskSpec and
vocabulary). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from arithinterp.runs import atomic_write_bytes, atomic_write_text
from arithinterp.tasks import TaskSpec
from arithinterp.tasks.vocab import TOKENS, VOCAB_SIZE

# A TransformerBridge; typed as its base class so importing this module stays cheap.
HookedModel = torch.nn.Module

CHECKPOINT_SCHEMA = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
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
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name in ("d_head", "d_mlp"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be None or a positive integer, got {v!r}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads "
                             f"({self.n_heads}) unless d_head is given")
        if self.act_fn not in ("gelu", "relu", "silu", "gelu_new"):
            raise ValueError(f"act_fn must be gelu, relu, silu or gelu_new, got {self.act_fn!r}")
        if self.normalization not in ("LN", "RMS", None):
            raise ValueError("normalization must be 'LN', 'RMS' or None, "
                             f"got {self.normalization!r}")
        if self.positional not in ("standard", "rotary"):
            raise ValueError(f"positional must be 'standard' or 'rotary', got {self.positional!r}")

    @property
    def head_dim(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    @property
    def mlp_dim(self) -> int:
        return self.d_mlp or 4 * self.d_model


@dataclass(frozen=True)
class LoadedModel:
    """A hooked model with the specs it was built from (task=None for pretrained LLMs)."""

    model: HookedModel
    spec: ModelSpec | None
    task: TaskSpec | None


def act_name(name: str, layer: int | None = None) -> str:
    """The classic TransformerLens hook name: ('z', 1) -> 'blocks.1.attn.hook_z'."""
    from transformer_lens.utilities import get_act_name  # lazy: importing TL costs seconds

    return get_act_name(name, layer)


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


def context_length(task: TaskSpec) -> int:
    """Positions a model of this task needs: the full CoT even when a curriculum trims it."""
    if task.format == "cot" and task.cot_tokens_removed:
        return TaskSpec(**{**asdict(task), "cot_tokens_removed": 0}).seq_len
    return task.seq_len


def build_model(spec: ModelSpec, task: TaskSpec, device: Device = "cpu") -> HookedModel:
    """A freshly initialised TransformerBridge (boot_native), seeded by spec.seed."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(
        d_model=spec.d_model, d_head=spec.head_dim, n_layers=spec.n_layers,
        n_ctx=context_length(task), n_heads=spec.n_heads, d_vocab=VOCAB_SIZE,
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
    current = next(model.parameters()).device
    return model if current == dev else model.to(dev)


def state_tensors(model: HookedModel) -> dict[str, torch.Tensor]:
    """The model's weights under their familiar names, detached, contiguous, on the CPU."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_model(model: HookedModel, spec: ModelSpec, task: TaskSpec, path: str | Path) -> Path:
    """Write a checkpoint directory (weights first, config last, each atomically)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / WEIGHTS_FILE, st_save(state_tensors(model)))
    config = {"schema_version": CHECKPOINT_SCHEMA, "model": asdict(spec), "task": asdict(task),
              "vocab": list(TOKENS)}
    atomic_write_text(path / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return path


def _from_dict(cls: type, data: Any, where: str) -> Any:
    """Rebuild a frozen config dataclass, rejecting unknown or missing keys by name."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")
    return cls(**data)


def read_checkpoint_config(path: str | Path) -> tuple[ModelSpec, TaskSpec]:
    """The ModelSpec and TaskSpec recorded in a checkpoint directory."""
    cfg_path = Path(path) / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a model checkpoint: {CONFIG_FILE} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from e
    expected = {"schema_version", "model", "task", "vocab"}
    if not isinstance(config, dict) or set(config) != expected:
        raise ValueError(f"{cfg_path}: expected keys {sorted(expected)}")
    if config["schema_version"] != CHECKPOINT_SCHEMA:
        raise ValueError(f"{cfg_path}: checkpoint schema_version {config['schema_version']!r} "
                         f"is not the one this arithinterp reads ({CHECKPOINT_SCHEMA})")
    if config["vocab"] != list(TOKENS):
        raise ValueError(f"{cfg_path}: the checkpoint's vocabulary differs from this arithinterp's")
    spec = _from_dict(ModelSpec, config["model"], f"{cfg_path} 'model'")
    task = _from_dict(TaskSpec, config["task"], f"{cfg_path} 'task'")
    return spec, task


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; anything else (a pickle, a truncated file) is refused."""
    path = Path(path)
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a valid safetensors file ({e}); checkpoints are never "
                         "unpickled") from e


def load_model(path: str | Path, device: Device = "cpu") -> LoadedModel:
    """Rebuild a checkpoint written by save_model, from its folder or a zoo name."""
    path = resolve_model_path(path)
    spec, task = read_checkpoint_config(path)
    weights = read_weights(path / WEIGHTS_FILE)
    model = build_model(spec, task, "cpu")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path / WEIGHTS_FILE} does not match the model in {CONFIG_FILE}: "
                         f"{str(e).splitlines()[-1].strip()}") from e
    model.eval()
    return LoadedModel(move_to(model, device), spec, task)


@dataclass(frozen=True)
class NativeWeights:
    """The weights of a from-scratch model in TransformerLens's shapes, detached.

    W_Q/W_K/W_V: [layer head d_model d_head], W_O: [layer head d_head d_model],
    W_in: [layer d_model d_mlp], W_out: [layer d_mlp d_model]; norm weights per layer.
    """

    W_E: torch.Tensor
    W_pos: torch.Tensor
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


def native_weights(model: HookedModel) -> NativeWeights | None:
    """Weights of a boot_native model with learned positions, or None for other models.

    Engines that recompute parts of the forward pass themselves use these; models they do
    not cover (rotary, grouped-query, gated MLPs, wrapped Hugging Face models) get None.
    """
    cfg = model.cfg
    if (getattr(cfg, "architecture", None) != "TransformerLensNative"
            or cfg.positional_embedding_type != "standard" or cfg.gated_mlp
            or (cfg.n_key_value_heads not in (None, cfg.n_heads))
            or cfg.parallel_attn_mlp or cfg.final_rms or cfg.attn_scores_soft_cap > 0
            or cfg.output_logits_soft_cap > 0
            or cfg.normalization_type not in ("LN", "RMS", None)):
        return None
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    if "pos_embed.weight" not in sd:
        return None
    n_layers, n_heads, d_head = cfg.n_layers, cfg.n_heads, cfg.d_head
    norm = cfg.normalization_type

    def per_layer(name: str) -> torch.Tensor:
        return torch.stack([sd[f"blocks.{i}.{name}"] for i in range(n_layers)])

    def heads_in(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        w = per_layer(f"attn.{name}.weight")  # [layer, head*d_head, d_model]
        b = per_layer(f"attn.{name}.bias")
        return (w.view(n_layers, n_heads, d_head, -1).transpose(-1, -2),
                b.view(n_layers, n_heads, d_head))

    def norm_of(prefix: str) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        if norm is None:
            return None
        return sd[f"{prefix}.weight"], sd.get(f"{prefix}.bias")

    W_Q, b_Q = heads_in("q")
    W_K, b_K = heads_in("k")
    W_V, b_V = heads_in("v")
    W_O = per_layer("attn.o.weight").view(n_layers, -1, n_heads, d_head).permute(0, 2, 3, 1)
    mlp = not cfg.attn_only
    scale = cfg.attn_scale if cfg.use_attn_scale and cfg.attn_scale > 0 else d_head**0.5
    return NativeWeights(
        W_E=sd["embed.weight"], W_pos=sd["pos_embed.weight"],
        W_Q=W_Q, b_Q=b_Q, W_K=W_K, b_K=b_K, W_V=W_V, b_V=b_V, W_O=W_O,
        b_O=per_layer("attn.o.bias"),
        W_in=per_layer("mlp.in.weight").transpose(1, 2) if mlp else None,
        b_in=per_layer("mlp.in.bias") if mlp else None,
        W_out=per_layer("mlp.out.weight").transpose(1, 2) if mlp else None,
        b_out=per_layer("mlp.out.bias") if mlp else None,
        ln1=[norm_of(f"blocks.{i}.ln1") for i in range(n_layers)] if norm else [],
        ln2=[norm_of(f"blocks.{i}.ln2") for i in range(n_layers)] if norm and mlp else [],
        ln_final=norm_of("ln_final"),
        W_U=sd["unembed.weight"].T, normalization=norm, eps=float(cfg.eps),
        act_fn=cfg.act_fn, attn_scale=float(scale),
    )


# ---- the zoo -------------------------------------------------------------------------------
def zoo_names() -> list[str]:
    """Names of the models shipped in arithinterp/zoo."""
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / CONFIG_FILE).is_file()) \
        if ZOO_DIR.is_dir() else []


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A checkpoint directory from a zoo name or a path."""
    p = Path(name_or_path)
    if (p / CONFIG_FILE).is_file():
        return p
    if str(name_or_path) in zoo_names():
        return ZOO_DIR / str(name_or_path)
    raise ValueError(f"{name_or_path!r} is neither a checkpoint directory nor a zoo model "
                     f"(shipped: {', '.join(zoo_names()) or 'none'})")


# ---- pretrained LLMs -----------------------------------------------------------------------
def load_pretrained(name_or_dir: str | Path, device: Device = "cpu",
                    dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A Hugging Face causal LM (hub name or local directory) wrapped as a TransformerBridge.

    Local directories load with no network access; hub names need one.
    """
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(name_or_dir)
    local = Path(src).is_dir()
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, attn_implementation="eager",
                                              local_files_only=local)
    tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
    name = getattr(hf.config, "_name_or_path", None) or src
    model = TransformerBridge.boot_transformers(name, hf_model=hf, tokenizer=tokenizer)
    model.eval()
    return LoadedModel(move_to(model, device), None, None)
