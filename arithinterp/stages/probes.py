"""Stage `probes`: linear probes with their controls (`arithinterp.probes`) into
``probes/<name>/``: scores, the per-target summary, regression predictions and weights."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from arithinterp import schema
from arithinterp.fields import check_int, described
from arithinterp.probes.summary import compute_probe_summary
from arithinterp.probes.sweep import ProbeConfig, fit_probes
from arithinterp.probes.targets import GROUPS, make_probe_dataset, make_targets, target_names
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model
from arithinterp.tasks import TaskSpec

NAME = "probes"
DIGIT_GROUPS = ("operands", "answer", "carries")


@dataclass(frozen=True)
class ProbesConfig:
    """One probe sweep: `n` fresh problems (seeded by fit.seed, which also seeds the split),
    the targets (group or target names) and how to fit."""

    name: str = "digits"
    n: int = described(2_000, "Fresh problems to probe.")
    targets: tuple[str, ...] = described(
        DIGIT_GROUPS, "Target groups or names: operands, answer, carries, partial_products, "
        "running_sums, or a0, carry2, ...")
    fit: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        schema.probes_key(self.name)  # validates the name
        check_int("n", self.n, min=10)
        if not self.targets:
            raise ValueError("targets must name at least one target or group")

    def check(self, task: TaskSpec) -> None:
        """Refuse unknown target names before anything runs."""
        known = set(GROUPS) | set(target_names(task))
        unknown = [t for t in self.targets if t not in known]
        if unknown:
            raise ValueError(f"unknown targets {unknown} for task {task.name}; known: groups "
                             f"{', '.join(GROUPS)} or names {', '.join(target_names(task))}")


Config = ProbesConfig


def key(config: ProbesConfig) -> str:
    return schema.probes_key(config.name)


def run(config: ProbesConfig, run: RunDir, ctx: Context) -> dict:
    """Fit the probes on fresh problems and write their tables and weights."""
    loaded = run_model(run, ctx)
    need_task(loaded, "probing")
    config.check(loaded.task)
    data = make_probe_dataset(loaded.task, config.n, config.fit.seed)
    targets = make_targets(data, list(config.targets))
    if not targets:
        raise ValueError(f"no target of {list(config.targets)} varies over these {config.n} "
                         "problems")
    start = time.perf_counter()
    results = fit_probes(loaded, data, targets, config.fit, progress=ctx.progress)
    stage = key(config)
    run.save(schema.PROBE_SCORES, stage, results.table)
    run.save(schema.PROBE_SUMMARY, stage, compute_probe_summary(results.table))
    if len(results.predictions):  # regression probes: test-set predictions vs truth
        run.save(schema.PROBE_PREDICTIONS, stage, results.predictions)
    run.save(schema.PROBE_WEIGHTS, stage, results.weights,
             metadata={"space": "activation", "formula": "act @ coef.T + intercept"})
    return {"n": config.n, "n_probes": int(results.table["probe"].nunique()),
            "targets": [t.name for t in targets], "seconds": round(time.perf_counter() - start,
                                                                   1)}
