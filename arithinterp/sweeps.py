"""Sweeps: a grid (or list) of training configs, each trial a normal run, run on Ray or
serially, resumable, one table of results.

A `Sweep` is a base `TrainConfig` (optionally a zoo recipe with fields overridden), axes of
values for any of its fields (``seed``, ``n_train``, ``format``, ``d_model``,
``task.digits_a``, ...) and the stages that follow training in every trial (default: the
evaluation). Each trial is the job ``[train config, *stages]`` run into
``<runs>/<name>.<axis>-<value>...`` (`stages.job.run_job`), so every command and explorer
page works on it. The sweep's record is the run ``<name>-sweep``: its ``sweep/`` stage
holds ``trials.parquet`` (one row per trial: status, error, config hash, the varied values
and the metrics its stages recorded), rewritten as trials finish.

- Resumable: a trial whose run is complete with the same configs is skipped; an unfinished
  one resumes (training from its checkpoint, bitwise as if never stopped).
- Fault-isolated: a trial whose config is invalid (say ``n_heads = 3`` with ``d_model =
  128``), or that raises while running, is recorded as failed with its message; the
  others run. Errors in the spec itself (unknown field, empty axis, a value of the wrong
  type, two trials with one configuration) are refused before anything starts.
- Backends: ``ray`` (a local Ray with one CPU and one torch thread per trial, or an
  existing cluster by ``address``; the runs folder must then be on storage every node
  sees) and ``serial`` (the same trial function in this process). Trials are seeded and
  single-threaded, so both give bitwise-identical weights.

Spec files are TOML (`load_spec`; see ``sweeps/*.toml``)::

    name = "formats"
    recipe = "add3-reversed"        # optional: start from a zoo recipe
    stages = ["evaluate"]           # or [stages.localize] tables of config fields
    [base]                          # TrainConfig fields (tables for task and model)
    max_steps = 800
    [grid]                          # every combination; or [[trials]] tables for a list
    format = ["plain", "reversed"]
    n_train = [500, 1000]
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import time
import tomllib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.catalog import is_run
from arithinterp.disk import StrPath
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context
from arithinterp.stages.evaluate import EvaluateConfig
from arithinterp.stages.job import holds_job, job_is_done, job_json, read_job, run_job
from arithinterp.stages.registry import STAGES, stage_name
from arithinterp.training.config import TrainConfig
from arithinterp.training.recipes import zoo_recipe

Backend = Literal["ray", "serial"]
REPORT = schema.SWEEP  # the record run's one stage
# axes that set several fields at once
ALIASES: dict[str, tuple[str, ...]] = {
    "seed": ("seed", "model.seed"),  # data order and model init
    "digits": ("task.digits_a", "task.digits_b"),
}
NOT_AFTER_TRAIN = ("model", "train")  # stages a trial cannot add (its train stage is the model)


@dataclass(frozen=True)
class Sweep:
    """A base training config, the values to vary (`grid`: every combination, in the order
    given; or `trials`: a list of {axis: value}), and the stages after training."""

    name: str
    base: TrainConfig = field(default_factory=TrainConfig)
    grid: dict[str, Sequence[Any]] = field(default_factory=dict)
    trials: tuple[dict[str, Any], ...] = ()
    stages: tuple[Any, ...] = (EvaluateConfig(),)

    def __post_init__(self) -> None:
        schema.localize_key(self.name)  # a valid run-name stem
        if bool(self.grid) == bool(self.trials):
            raise ValueError("give the values to vary as a grid or as a list of trials "
                             "(exactly one)")
        for axis, values in self.grid.items():
            if not isinstance(values, list | tuple) or not values:
                raise ValueError(f"grid.{axis}: empty; give at least one value")
        object.__setattr__(self, "grid", {a: tuple(v) for a, v in self.grid.items()})
        for i, point in enumerate(self.trials):
            if not isinstance(point, dict) or not point:
                raise ValueError(f"trials[{i}]: give at least one axis = value")
        for i, config in enumerate(self.stages):
            name = stage_name(config)
            if name in NOT_AFTER_TRAIN:
                raise ValueError(f"stages[{i}]: {name} cannot follow a trial's training")

    def points(self) -> list[dict[str, Any]]:
        """The varied values of every trial, in order."""
        if self.trials:
            return [dict(p) for p in self.trials]
        axes = list(self.grid)
        return [dict(zip(axes, combo, strict=True))
                for combo in itertools.product(*(self.grid[a] for a in axes))]

    @property
    def axes(self) -> list[str]:
        seen: dict[str, None] = {}
        for point in self.points():
            seen.update(dict.fromkeys(point))
        return list(seen)

    @property
    def report_name(self) -> str:
        return f"{self.name}-{REPORT}"


@dataclass(frozen=True)
class Trial:
    """One point of a sweep: its run name, the values it varies, and its job (or why its
    config is invalid)."""

    name: str
    values: dict[str, Any]
    configs: tuple[Any, ...] | None
    error: str | None = None

    @property
    def config_hash(self) -> str | None:
        if self.configs is None:
            return None
        text = json.dumps(job_json(list(self.configs)), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# ---- axes ------------------------------------------------------------------------------------
def axis_fields(base: TrainConfig, axis: str) -> list[tuple[tuple[str, ...], Any]]:
    """The fields (paths into the config, with their types) an axis sets: an alias, a
    dotted path (``task.format``) or a bare field name of the config, its task or its model."""
    if axis in ALIASES:
        paths = [tuple(p.split(".")) for p in ALIASES[axis]]
    elif "." in axis:
        paths = [tuple(axis.split("."))]
    else:
        owners = [(), ("task",), ("model",)]
        paths = [(*o, axis) for o in owners if _field_type(base, (*o, axis)) is not None][:1]
        if not paths:
            known = sorted({f.name for o in owners for f in dataclasses.fields(_at(base, o))}
                           | set(ALIASES))
            raise ValueError(f"unknown field {axis!r} (fields of the config, its task and its "
                             f"model: {', '.join(known)})")
    out = []
    for path in paths:
        tp = _field_type(base, path)
        if tp is None:
            raise ValueError(f"unknown field {axis!r}: {'.'.join(path)} is not a field of "
                             f"{type(_at(base, path[:-1], strict=False)).__name__}")
        out.append((path, tp))
    return out


def _at(obj: Any, path: tuple[str, ...], strict: bool = True) -> Any:
    for part in path:
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in
                                                              dataclasses.fields(obj)}:
            if strict:
                raise ValueError(f"{'.'.join(path)} is not a field")
            return obj
        obj = getattr(obj, part)
    return obj


def _field_type(base: Any, path: tuple[str, ...]) -> Any:
    """The type hint of the field at `path` of the config instance `base`, else None."""
    try:
        owner = _at(base, path[:-1])
    except ValueError:
        return None
    if not dataclasses.is_dataclass(owner):
        return None
    if path[-1] not in {f.name for f in dataclasses.fields(owner) if f.init}:
        return None
    return typing.get_type_hints(type(owner))[path[-1]]


def _set(data: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _label(value: Any) -> str:
    """A value as a run-name part: letters, digits, '_' and '.' ('none', 'true')."""
    text = "none" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)
    return "".join(c if c.isalnum() or c in "_." else "_" for c in text) or "_"


def make_trials(sweep: Sweep) -> list[Trial]:
    """Every trial of the sweep. Spec errors (unknown field, a value of the wrong type, two
    trials with one configuration) raise; a valid-typed value the config refuses (``n_heads
    = 3`` with ``d_model = 128``) makes that trial's `error`."""
    base = schema.to_json(sweep.base)
    fields = {axis: axis_fields(sweep.base, axis) for axis in sweep.axes}
    trials, seen_hash, seen_name = [], {}, {}
    for i, point in enumerate(sweep.points()):
        where = f"trials[{i}]" if sweep.trials else "grid"
        data = copy.deepcopy(base)
        for axis, value in point.items():
            for path, tp in fields[axis]:
                checked = schema.from_json(tp, toml_nones(tp, value), f"{where}.{axis}")
                _set(data, path, schema.to_json(checked))
        name = ".".join([sweep.name, *(f"{_label(a)}-{_label(v)}" for a, v in point.items())])
        if name in seen_name:
            same = "are the same configuration" if seen_name[name] == point else \
                f"would share the run name {name}"
            raise ValueError(f"{where}: trials {seen_name[name]} and {point} {same}")
        seen_name[name] = point
        try:
            train = schema.from_json(TrainConfig, data, f"trial {name}")
        except ValueError as e:
            trials.append(Trial(name, point, None, str(e)))
            continue
        trial = Trial(name, point, (train, *sweep.stages))
        if trial.config_hash in seen_hash:
            raise ValueError(f"{where}: trials {seen_hash[trial.config_hash]} and {point} are "
                             "the same configuration")
        seen_hash[trial.config_hash] = point
        trials.append(trial)
    return trials


# ---- spec files ------------------------------------------------------------------------------
SPEC_KEYS = {"name", "recipe", "base", "grid", "trials", "stages"}


def load_spec(path: StrPath) -> Sweep:
    """A sweep from a TOML spec; every error is one line naming the file and the field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no sweep spec at {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path.name}: not valid TOML: {e}") from None
    try:
        sweep = spec_from_dict(data, default_name=path.stem)
        make_trials(sweep)  # spec errors surface now, before anything starts
    except ValueError as e:
        raise ValueError(f"{path.name}: {e}") from None
    return sweep


def spec_from_dict(data: dict, default_name: str = "sweep") -> Sweep:
    """A sweep from the parsed spec (see the module doc for the keys)."""
    if unknown := sorted(set(data) - SPEC_KEYS):
        raise ValueError(f"unknown keys {unknown} (known: {sorted(SPEC_KEYS)})")
    base_data = data.get("base", {})
    if not isinstance(base_data, dict):
        raise ValueError("base: expected a table of TrainConfig fields")
    if "recipe" in data:
        base_data = _merge(schema.to_json(zoo_recipe(data["recipe"])), base_data)
    base = schema.from_json(TrainConfig, toml_nones(TrainConfig, base_data), "base")
    stages = data.get("stages", ["evaluate"])
    if isinstance(stages, list):
        stages = {s: {} for s in stages} if all(isinstance(s, str) for s in stages) else None
    if not isinstance(stages, dict):
        raise ValueError("stages: expected a list of stage names or tables of their fields")
    configs = []
    for name, fields in stages.items():
        if name not in STAGES or name in NOT_AFTER_TRAIN:
            known = [s for s in STAGES if s not in NOT_AFTER_TRAIN]
            raise ValueError(f"stages.{name}: unknown stage (after training: "
                             f"{', '.join(known)})")
        cls = STAGES[name].Config
        configs.append(schema.from_json(cls, toml_nones(cls, fields), f"stages.{name}"))
    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise ValueError("grid: expected a table of axis = [values]")
    for axis, values in grid.items():
        if not isinstance(values, list):
            raise ValueError(f"grid.{axis}: expected a list of values, got {values!r}")
    trials = data.get("trials", [])
    if not isinstance(trials, list):
        raise ValueError("trials: expected [[trials]] tables of axis = value")
    return Sweep(name=data.get("name", default_name), base=base, grid=grid,
                 trials=tuple(trials), stages=tuple(configs))


def toml_nones(tp: Any, value: Any) -> Any:
    """TOML has no null: the string "none" means None in a field that can be None (and
    cannot be the string "none"), at any depth of a config's table."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) \
        else (tp,)
    if value == "none" and type(None) in args and not any(
            a is str or (typing.get_origin(a) is Literal and "none" in typing.get_args(a))
            for a in args):
        return None
    if isinstance(value, dict):
        classes = [a for a in args if dataclasses.is_dataclass(a)]
        fits = [c for c in classes if set(value) <= {f.name for f in dataclasses.fields(c)}]
        if fits:
            hints = typing.get_type_hints(fits[0])
            return {k: toml_nones(hints[k], v) for k, v in value.items()}
    if isinstance(value, list):
        inner = [typing.get_args(a)[0] for a in args if typing.get_origin(a) is tuple
                 and typing.get_args(a)[-1] is Ellipsis]
        if inner:
            return [toml_nones(inner[0], v) for v in value]
    return value


def _merge(into: dict, over: dict) -> dict:
    out = dict(into)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def sweep_json(sweep: Sweep) -> dict:
    """The sweep as the record run's config."""
    return {"name": sweep.name, "base": schema.to_json(sweep.base),
            "grid": schema.to_json(sweep.grid), "trials": schema.to_json(list(sweep.trials)),
            "stages": job_json(list(sweep.stages))["job"]}


# ---- running -----------------------------------------------------------------------------
def run_trial(runs_dir: str, name: str, job: dict, device: str = "cpu") -> dict:
    """Run (or resume) one trial's job into ``runs_dir/name``, on one torch thread; never
    raises for the trial's own failure: returns {"status": "done"} or the error."""
    torch.set_num_threads(1)
    try:
        run_job(runs_dir, name, read_job(job), ctx=Context(device=device, progress=False))
        return {"status": "done", "error": None}
    except Exception as e:  # the trial's failure is data; the sweep goes on
        message = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        return {"status": "failed", "error": message.splitlines()[0]}


def run_sweep(sweep: Sweep, runs_dir: StrPath, *, backend: Backend = "ray",
              workers: int | None = None, address: str | None = None, device: str = "cpu",
              progress: bool = True, on_start: Callable[[float], None] | None = None
              ) -> pd.DataFrame:
    """Run every trial not yet complete; returns (and writes into ``<name>-sweep``) the
    results table. `on_start` gets Ray's start-up time in seconds."""
    runs_dir = Path(runs_dir).resolve()
    trials = make_trials(sweep)
    todo = [t for t in trials if t.configs is not None
            and not job_is_done(runs_dir / t.name, list(t.configs))]
    report = RunDir.create(runs_dir, sweep.report_name, config=sweep_json(sweep),
                           seeds={}, overwrite=True)
    report.start_stage(REPORT, REPORT)
    failures = {t.name: t.error for t in trials if t.error}
    bar = tqdm(total=len(trials), desc=f"sweep {sweep.name}", unit="trial",
               disable=not progress, initial=len(trials) - len(todo))

    counts = {"done": len(trials) - len(todo) - len(failures), "failed": len(failures)}

    def finished(trial: Trial, result: dict) -> None:
        counts[result["status"]] += 1
        if result["status"] == "failed":
            failures[trial.name] = result["error"]
        bar.update()
        report.save(schema.SWEEP_TRIALS, REPORT, results_table(sweep, runs_dir, failures, trials))

    def show(running: list[Trial]) -> None:
        live = ", ".join(f"{t.name.removeprefix(sweep.name + '.')} "
                         f"{trial_progress(runs_dir / t.name)}" for t in running[:3])
        bar.set_postfix_str(f"done {counts['done']}, failed {counts['failed']}, running "
                            f"{len(running)}" + (f" [{live}]" if live else ""))

    try:
        if backend == "serial":
            for trial in todo:
                show([trial])
                finished(trial, run_trial(str(runs_dir), trial.name,
                                          job_json(list(trial.configs)), device))
        elif backend == "ray":
            _run_on_ray(todo, runs_dir, device, workers, address, finished, show, on_start)
        else:
            raise ValueError(f"backend must be ray or serial, got {backend!r}")
        show([])
    except BaseException:
        bar.close()
        report.save(schema.SWEEP_TRIALS, REPORT, results_table(sweep, runs_dir, failures, trials))
        report.close()  # unfinished: a rerun continues with the trials left
        raise
    bar.close()
    table = results_table(sweep, runs_dir, failures, trials)
    report.save(schema.SWEEP_TRIALS, REPORT, table)
    report.finish_stage(REPORT, {"trials": len(table),
                                 **table["status"].value_counts().to_dict()})
    report.finish()
    return table


def _run_on_ray(todo: list[Trial], runs_dir: Path, device: str, workers: int | None,
                address: str | None, finished, show, on_start) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("Ray is not installed (pip install ray); or run the sweep with "
                         "--serial") from None
    if not todo:
        return
    start = time.perf_counter()
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        n = workers or min(os.cpu_count() or 1, len(todo))
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
    if on_start:
        on_start(time.perf_counter() - start)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
    pending = {remote.remote(str(runs_dir), t.name, job_json(list(t.configs)), device): t
               for t in todo}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                trial = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # the worker died (killed, out of memory)
                    result = {"status": "failed",
                              "error": f"{type(e).__name__}: {e}".splitlines()[0]}
                finished(trial, result)
            show([t for t in pending.values() if (runs_dir / t.name).is_dir()])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.shutdown()


def trial_progress(path: Path) -> str:
    """'step/max_steps' of a trial's training as its log records it ('' before any)."""
    log = path / schema.TRAIN_LOG.at(schema.MODEL)
    config = path / schema.TRAIN_CONFIG.at(schema.MODEL)
    try:
        last = log.read_text(encoding="utf-8").strip().splitlines()[-1]
        steps = json.loads(config.read_text(encoding="utf-8"))["max_steps"]
        return f"{json.loads(last)['step']}/{steps}"
    except (OSError, IndexError, KeyError, ValueError):
        return ""


# ---- results -------------------------------------------------------------------------------
def results_table(sweep: Sweep, runs_dir: StrPath, failures: dict[str, str] | None = None,
                  trials: list[Trial] | None = None) -> pd.DataFrame:
    """One row per trial: status (done, failed, unfinished, pending), error, config hash,
    the varied values, held-out exact match and per-digit accuracy, steps, steps to the
    target accuracy, wall time, and every scalar the other stages recorded
    (``<stage>.<key>``). Read from the trials' runs (`trials`: the sweep's, when already
    made); writes nothing."""
    failures = failures or {}
    axes = sweep.axes
    rows = []
    for trial in make_trials(sweep) if trials is None else trials:
        row = {"trial": trial.name, "run": None if trial.error else trial.name,
               "status": "pending", "error": trial.error or failures.get(trial.name),
               "config_hash": trial.config_hash, **{a: trial.values.get(a) for a in axes}}
        path = Path(runs_dir) / trial.name
        if trial.error:
            row["status"] = "failed"
        elif is_run(path):
            run = RunDir.open(path)
            row.update(_metrics(run, trial))
            if holds_job(run, list(trial.configs)):
                row["status"], row["error"] = "done", None
            elif run.status == "failed":
                row["status"] = "failed"
                row["error"] = row["error"] or next(
                    (s.get("error") for s in run.manifest["stages"].values()
                     if s.get("status") == "failed"), None)
            else:
                row["status"] = "unfinished"
        rows.append(row)
    table = pd.DataFrame(rows)
    for axis in axes:  # parquet wants one type per column
        kinds = {type(v) for v in table[axis] if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            table[axis] = table[axis].map(lambda v: None if v is None else str(v))
    return table


def _metrics(run: RunDir, trial: Trial) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stages = run.manifest["stages"]
    seconds = [_seconds(s) for s in stages.values()]
    out["wall_seconds"] = round(sum(s for s in seconds if s is not None), 1)
    if run.stage_done(schema.MODEL):
        summary = run.stage_summary(schema.MODEL)
        final = run.load(schema.TRAIN_FINAL, schema.MODEL)
        out.update(exact_match=final["exact_match"], steps=summary.get("steps"),
                   train_seconds=summary.get("seconds"))
        out.update({f"acc_c{k}": v for k, v in enumerate(final["digit_accuracy"])})
        out["steps_to_target"] = _steps_to_target(run, trial.configs[0])
    for key, stage in stages.items():
        if key == schema.MODEL or stage.get("status") != "done":
            continue
        for k, v in _flatten(stage.get("summary") or {}).items():
            if isinstance(v, int | float | str | bool) or v is None:
                out[f"{key}.{k}"] = v
    return out


def _seconds(stage: dict) -> float | None:
    try:
        return (datetime.fromisoformat(stage["finished"])
                - datetime.fromisoformat(stage["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return None


def _steps_to_target(run: RunDir, config: TrainConfig) -> float:
    """The first eval step whose held-out exact match reached the config's target accuracy
    (0.99 without one); NaN if none did."""
    target = config.target_accuracy if config.target_accuracy is not None else 0.99
    curve = run.load(schema.TRAINING_CURVE, schema.MODEL).drop_duplicates("step")
    hit = curve[curve["exact_match"] >= target]
    return float(hit["step"].min()) if len(hit) else math.nan


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
