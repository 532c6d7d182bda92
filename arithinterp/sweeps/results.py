"""A sweep's results table, read from its trials' runs: status, error, the varied values and
the metrics the stages recorded. Writes nothing.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from arithinterp import schema
from arithinterp.catalog import is_run
from arithinterp.disk import StrPath
from arithinterp.runs import RunDir
from arithinterp.stages.job import holds_job
from arithinterp.sweeps.spec import Sweep, Trial, make_trials
from arithinterp.training.config import TrainConfig


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
