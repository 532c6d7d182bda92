"""Checkpoints and the zoo: a model's weights and config on disk, and loading them back.

A checkpoint is a directory with ``model.safetensors`` (the state dict, familiar keys such
as ``blocks.0.attn.q.weight``) and ``config.json`` (schema version, ModelSpec, task spec and
vocabulary). A run's ``model/`` folder is one, and so is every model of the zoo
(``arithinterp/zoo/<name>/model``). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from torch import Tensor

from arithinterp import schema
from arithinterp.disk import atomic_write_bytes, atomic_write_text, safetensors_bytes
from arithinterp.models import (
    Device,
    HookedModel,
    LoadedModel,
    ModelSpec,
    build_model,
    move_to,
)
from arithinterp.tasks import Task

ZOO_DIR = Path(__file__).parent / "zoo"


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under their familiar names, detached, contiguous, on the CPU."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


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


def zoo_names() -> list[str]:
    """Names of the models shipped in arithinterp/zoo (each a read-only run)."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir()
                  if (p / schema.MODEL / schema.CHECKPOINT_CONFIG.file).is_file())
