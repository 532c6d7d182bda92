"""A sweep's spec: the base config, the values to vary and the stages after training
(`Sweep`), the trials it makes (`make_trials`: run names, configs, or why a config is
invalid), and TOML spec files (`load_spec`). Spec errors are refused here, before anything
runs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from arithinterp import schema
from arithinterp.disk import StrPath
from arithinterp.stages.evaluate import EvaluateConfig
from arithinterp.stages.job import job_json
from arithinterp.stages.registry import STAGES, stage_name
from arithinterp.training.config import TrainConfig
from arithinterp.training.recipes import zoo_recipe

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
