"""Stage `localize`: one localization experiment of a task model (`analysis.suite`) into
``localize/<experiment>/``: every table, the per-prompt patching values, the pairs and the
activation cache; `save_localization` writes any localization (the llm stage's too)."""

from __future__ import annotations

from arithinterp import schema
from arithinterp.analysis.suite import Localization, LocalizeConfig, localize_task
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model
from arithinterp.training.checkpoints import held_out_split

NAME = "localize"
Config = LocalizeConfig


def key(config: LocalizeConfig) -> str:
    return config.key


def run(config: LocalizeConfig, run: RunDir, ctx: Context) -> dict:
    """Localize the run's model on its own task (or config.task) and write the results."""
    loaded = run_model(run, ctx)
    need_task(loaded, "localization")
    if config.task is not None:
        loaded = loaded.with_task(config.task)
    config.check(loaded.task)
    pool = held_out_split(loaded.path, loaded.task) if config.prompts == "held_out" else None
    result = localize_task(loaded.model, loaded.task, config, pool=pool, progress=ctx.progress)
    save_localization(run, config.key, result)
    return {k: result.summary[k] for k in ("change", "metric", "n_pairs", "selected",
                                            "clean_accuracy", "warnings")}


def save_localization(run: RunDir, stage: str, result: Localization) -> None:
    """Write a localization's tables, tensor groups and summary into the stage's folder."""
    for artifact, table in result.tables.items():
        run.save(artifact, stage, table)
    for artifact, tensors in result.tensors.items():
        run.save(artifact, stage, tensors, metadata=result.metadata.get(artifact))
    run.save(schema.LOCALIZE_SUMMARY, stage, result.summary)
