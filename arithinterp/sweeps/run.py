"""Running a sweep: every trial not yet complete, on Ray (one CPU and one torch thread per
trial) or serially in this process, each a normal run, with the sweep's record run
rewritten as trials finish.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.disk import StrPath
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context
from arithinterp.stages.job import job_is_done, job_json, read_job, run_job
from arithinterp.sweeps.results import results_table
from arithinterp.sweeps.spec import REPORT, Sweep, Trial, make_trials, sweep_json

Backend = Literal["ray", "serial"]


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
