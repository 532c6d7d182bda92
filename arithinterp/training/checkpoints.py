"""The training directory on disk: what a run writes, the checkpoint it resumes from, and
the data splits its saved config names.

A training directory (a checkpoint folder, e.g. a run's ``model/``) holds ``config.json`` +
``model.safetensors`` (the final model and the task spec its last step trained on),
``train_config.json``, ``metrics.jsonl`` (one line per eval), ``metrics.json`` (final
held-out evaluation) and ``extra.safetensors`` (trained extra-loss parameters). While
training runs, ``checkpoint/`` holds model, optimizer (``torch.load(weights_only=True)``),
generator state and data position; training N steps straight equals N/2 steps, a resume,
and N/2 more, bitwise, on the CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from arithinterp import schema
from arithinterp.checkpoints import load_model, read_weights, save_model, state_tensors
from arithinterp.disk import atomic_write_bytes, atomic_write_text, safetensors_bytes
from arithinterp.models import HookedModel
from arithinterp.tasks import Dataset, Task, make_dataset, make_splits
from arithinterp.tasks.data import make_test_split
from arithinterp.training.config import TrainConfig


def prepare_dir(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    """Check that `out` can take this run (or resume it) and write its training config."""
    cfg_text = json.dumps(config.to_dict(), indent=2) + "\n"
    cfg_file = out / schema.TRAIN_CONFIG.file
    if resume:
        if not (out / schema.CHECKPOINT_DIR).is_dir():
            raise FileNotFoundError(f"nothing to resume in {out}: no {schema.CHECKPOINT_DIR}/ "
                                    "folder")
        if json.loads(cfg_file.read_text()) != json.loads(cfg_text):
            raise ValueError(f"cannot resume {out}: its {schema.TRAIN_CONFIG.file} differs from "
                             "this config")
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to "
                                  "replace it or resume=True (--resume) to continue it")
        if not cfg_file.is_file():
            raise FileExistsError(f"refusing to overwrite {out}: it is not a training directory")
        shutil.rmtree(out)
    atomic_write_text(cfg_file, cfg_text)


def write_checkpoint(out: Path, model: HookedModel, config: TrainConfig, spec: Task,
                     opt: torch.optim.Optimizer, extras: torch.nn.Module,
                     gen: torch.Generator, state: dict) -> None:
    """Write into a fresh folder, then swap it in, so a crash leaves the old checkpoint."""
    ckpt = out / schema.CHECKPOINT_DIR
    tmp = ckpt.with_name(schema.CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, config.model, spec, tmp)
    extra = {**state_tensors(extras), "__generator__": gen.get_state()}
    atomic_write_bytes(tmp / schema.EXTRA_WEIGHTS.file, safetensors_bytes(extra))
    torch.save(opt.state_dict(), tmp / schema.OPTIMIZER_STATE)
    atomic_write_text(tmp / schema.LOOP_STATE, json.dumps(state) + "\n")
    old = ckpt.with_name(schema.CHECKPOINT_DIR + ".old")
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint(out: Path, extras: torch.nn.Module,
                    gen: torch.Generator) -> tuple[HookedModel, dict, dict]:
    """The model, optimizer state and loop state of `out`'s checkpoint; the extra-loss
    parameters and the generator state are restored in place, and eval records written
    after the checkpoint are dropped."""
    ckpt = out / schema.CHECKPOINT_DIR
    model = load_model(ckpt).model
    saved = read_weights(ckpt / schema.EXTRA_WEIGHTS.file)
    gen.set_state(saved.pop("__generator__"))
    extras.load_state_dict(saved, strict=True)
    opt_state = torch.load(ckpt / schema.OPTIMIZER_STATE, weights_only=True)
    state = json.loads((ckpt / schema.LOOP_STATE).read_text())
    _truncate_metrics(out / schema.TRAIN_LOG.file, state["step"])
    return model, opt_state, state


def write_final(out: Path, model: HookedModel, config: TrainConfig, spec: Task,
                extras: torch.nn.Module, summary: dict) -> None:
    """The trained model (with the task spec it ends on), its extra-loss parameters and its
    final evaluation; the checkpoint goes."""
    save_model(model, config.model, spec, out)
    atomic_write_bytes(out / schema.EXTRA_WEIGHTS.file, safetensors_bytes(state_tensors(extras)))
    atomic_write_text(out / schema.TRAIN_FINAL.file, json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out / schema.CHECKPOINT_DIR, ignore_errors=True)


def write_snapshot(out: Path, model: HookedModel, step: int) -> None:
    """The weights at `step`, for progress measures over training (never read to resume)."""
    atomic_write_bytes(out / schema.SNAPSHOTS_DIR / schema.snapshot_file(step),
                       safetensors_bytes(state_tensors(model)))


def append_metrics(out: Path, record: dict) -> None:
    """One eval's record, as a line of ``metrics.jsonl``."""
    with (out / schema.TRAIN_LOG.file).open("a") as f:
        f.write(json.dumps(record) + "\n")


def held_out_split(path: str | Path, task: Task, n: int | None = None) -> Dataset:
    """The test split a checkpoint was trained against (a fresh seeded one when it has no
    training config), rendered for `task`, first n problems."""
    cfg_file = Path(path) / schema.TRAIN_CONFIG.file
    if cfg_file.is_file():
        tc = TrainConfig.from_dict(json.loads(cfg_file.read_text()))
        test = make_test_split(tc.task, tc.n_test, tc.seed, sampling=tc.sampling)
        if tc.task != task:
            keep = [i for i, (a, b) in enumerate(zip(test.a.tolist(), test.b.tolist(),
                                                     strict=True)) if task.is_valid(a, b)]
            test = make_dataset(task, test.a[keep], test.b[keep])
    else:
        test = make_test_split(task, n or 2_000, seed=12345)
    return test if n is None else test[:n]


def training_split(path: str | Path, task: Task) -> Dataset | None:
    """The training problems a checkpoint saw (None when it records no training config, or
    was trained on another task)."""
    cfg_file = Path(path) / schema.TRAIN_CONFIG.file
    if not cfg_file.is_file():
        return None
    tc = TrainConfig.from_dict(json.loads(cfg_file.read_text()))
    if tc.task != task:
        return None
    return make_splits(tc.task, tc.train_size, tc.n_test, tc.seed, sampling=tc.sampling)[0]


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop eval records written after the checkpoint we resume from."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))
