"""Jobs: a list of stage configs run into one run directory.

The manifest's config is the job (``{"job": [{"stage": name, "config": {...}}, ...]}``),
and each stage writes its config to ``<stage key>/stage.json``; both read back equal
(`read_job`, `read_stage_config`). A finished stage is never redone: rerunning the same
job resumes it. A stage that raises marks itself and the run failed, with the reason.
Configs are validated before the run directory is created, so bad input writes nothing.
The stages a job may name are in `registry`; the shipped jobs in `studies.demo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.catalog import is_run
from arithinterp.disk import StrPath
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context
from arithinterp.stages.model import ModelSource
from arithinterp.stages.registry import STAGES, stage_key, stage_name


def job_json(configs: list[Any]) -> dict:
    """The manifest config of a job."""
    return {"job": [{"stage": stage_name(c), "config": schema.to_json(c)} for c in configs]}


def read_job(data: dict) -> list[Any]:
    """Stage configs from a manifest config (unknown stages and keys refused, by name)."""
    if not isinstance(data, dict) or set(data) != {"job"} or not isinstance(data["job"], list):
        raise ValueError("a job is an object {'job': [{'stage': ..., 'config': {...}}, ...]}")
    out = []
    for i, entry in enumerate(data["job"]):
        if not isinstance(entry, dict) or set(entry) != {"stage", "config"}:
            raise ValueError(f"job[{i}]: expected keys ['config', 'stage'], got {entry!r}")
        if entry["stage"] not in STAGES:
            raise ValueError(f"job[{i}]: unknown stage {entry['stage']!r} (known: "
                             f"{', '.join(STAGES)})")
        out.append(schema.from_json(STAGES[entry["stage"]].Config, entry["config"],
                                    f"job[{i}] ({entry['stage']})"))
    return out


def read_stage_config(run: RunDir, key: str) -> Any:
    """The config a stage wrote into ``<key>/stage.json``."""
    entry = run.load_json(f"{key}/{schema.STAGE_CONFIG}")
    return read_job({"job": [entry]})[0]


def job_seeds(configs: list[Any]) -> dict[str, Any]:
    seeds = {}
    for c in configs:
        for attr in ("seed", "fit"):
            value = getattr(c, attr, None)
            value = getattr(value, "seed", value) if attr == "fit" else value
            if isinstance(value, int) and not isinstance(value, bool):
                seeds[stage_key(c)] = value
    return seeds


def check_job(configs: list[Any]) -> list[str]:
    """Validate a job before anything is written: registered configs, distinct stage keys,
    a model source that exists. Returns the keys in order."""
    if not configs:
        raise ValueError("a job needs at least one stage")
    keys = [stage_key(c) for c in configs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"stages write the same folder twice: {dup}")
    for c in configs:
        if isinstance(c, ModelSource):
            c.check()
    return keys


@dataclass(frozen=True)
class JobResult:
    """The run a job wrote, and the stage summaries of this call (skipped stages excluded)."""

    run: RunDir
    ran: dict[str, dict]


def run_job(root: StrPath, name: str | None, configs: list[Any], *, ctx: Context | None = None,
            overwrite: bool = False, resume: bool = True, extend: bool = False) -> JobResult:
    """Run (or resume) the stages into ``root/name`` and mark the run complete.

    ``extend=True`` adds the stages to an existing run (its model stage is kept); a stage
    key it already holds must come with the same config unless ``overwrite``.
    """
    ctx = ctx or Context()
    keys = check_job(configs)
    path = Path(root) / name if name else None
    if extend and path is not None and is_run(path):
        run = _extend(RunDir.open(path).lock(), configs, keys, overwrite=overwrite)
    else:
        run = RunDir.create(root, name, config=job_json(configs), seeds=job_seeds(configs),
                            overwrite=overwrite, resume=resume)
    ran: dict[str, dict] = {}
    bar = tqdm(total=len(configs), desc="job", unit="stage", disable=not ctx.progress
               or len(configs) < 2)
    current = None
    try:
        for config, key in zip(configs, keys, strict=True):
            bar.set_postfix_str(key)
            if not run.stage_done(key):
                current = key
                stage = stage_name(config)
                run.start_stage(key, stage)
                ran[key] = STAGES[stage].run(config, run, ctx)
                # after the stage: a training stage wants an empty model/ folder to start in
                run.save_json(f"{key}/{schema.STAGE_CONFIG}",
                              {"stage": stage, "config": schema.to_json(config)}, stage=key)
                run.finish_stage(key, ran[key])
                current = None
            bar.update()
        bar.close()
        run.finish()
    except BaseException as e:
        bar.close()
        if current is not None:
            run.fail_stage(current, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        run.close()
        raise
    return JobResult(run, ran)


def _extend(run: RunDir, configs: list[Any], keys: list[str], *, overwrite: bool) -> RunDir:
    """Add stages to a run: reuse its model, refuse a changed config unless overwrite."""
    have = {stage_key(c): c for c in read_job(run.manifest["config"])}
    for config, key in zip(configs, keys, strict=True):
        if key in have and have[key] != config and run.stage_done(key):
            if key == schema.MODEL:
                raise ValueError(f"run {run.dir} already has another model ({have[key]}); "
                                 "make a new run for this one")
            if not overwrite:
                raise ValueError(f"run {run.dir} already has stage {key} with another config; "
                                 "pass overwrite to replace it")
            run.start_stage(key)  # redone below
    merged = {**have, **dict(zip(keys, configs, strict=True))}
    run.set_job(job_json(list(merged.values())), job_seeds(list(merged.values())))
    return run


def ensure_job(root: StrPath, name: str, configs: list[Any], *, ctx: Context | None = None
               ) -> RunDir:
    """The complete run ``root/name`` holding these stages with these configs (reused as it
    is, whatever else was added to it), else `run_job` (which resumes an unfinished one)."""
    path = Path(root) / name
    if job_is_done(path, configs):
        return RunDir.open(path)
    return run_job(root, name, configs, ctx=ctx).run


def job_is_done(path: StrPath, configs: list[Any]) -> bool:
    """Whether ``path`` is a complete, sound run holding these stages with these configs
    (whatever else was added to it)."""
    return is_run(path) and holds_job(RunDir.open(path), configs)


def holds_job(run: RunDir, configs: list[Any]) -> bool:
    """Whether the run is complete and sound and holds these stages with these configs."""
    if not run.is_complete or run.problems():
        return False
    have = {stage_key(c): c for c in read_job(run.manifest["config"])}
    return all(have.get(stage_key(c)) == c for c in configs)


def run_on(source: str | Path, configs: list[Any], *, runs_dir: StrPath,
           name: str | None = None, ctx: Context | None = None) -> JobResult:
    """Run stages on a model: added to `source` when it is a run; else into runs_dir/name
    with the model copied in first (a run of that name made from the same model is added
    to, one made from another model refused)."""
    if is_run(source):
        path = Path(source)
        return run_job(path.parent, path.name, configs, ctx=ctx, extend=True)
    model_stage = ModelSource(str(source))
    model_stage.check()
    if name is not None and is_run(Path(runs_dir) / name):
        existing = read_job(RunDir.open(Path(runs_dir) / name).manifest["config"])
        made_from = next((c for c in existing if stage_key(c) == schema.MODEL), None)
        if made_from != model_stage:
            raise ValueError(f"run {Path(runs_dir) / name} was made from "
                             f"{getattr(made_from, 'source', made_from)}, not {source}")
        return run_job(runs_dir, name, configs, ctx=ctx, extend=True)
    return run_job(runs_dir, name, [model_stage, *configs], ctx=ctx)
