"""Stage `evaluate`: held-out accuracy of the run's model (exact, per digit, by carries)."""

from __future__ import annotations

from dataclasses import dataclass

from arithinterp import schema
from arithinterp.evaluate import evaluate
from arithinterp.fields import check_int
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model
from arithinterp.training.checkpoints import held_out_split

NAME = "evaluate"


@dataclass(frozen=True)
class EvaluateConfig:
    """How many held-out problems to score (None: the model's whole test split)."""

    n: int | None = None

    def __post_init__(self) -> None:
        check_int("n", self.n, min=1, optional=True)


Config = EvaluateConfig


def key(config: EvaluateConfig) -> str:
    return schema.EVALUATE


def run(config: EvaluateConfig, run: RunDir, ctx: Context) -> dict:
    """Score the model on its held-out problems; write summary, examples, by_carries."""
    loaded = run_model(run, ctx)
    need_task(loaded, "evaluation")
    result = evaluate(loaded.model, held_out_split(loaded.path, loaded.task, config.n))
    run.save(schema.EVAL_SUMMARY, schema.EVALUATE, result.summary())
    run.save(schema.EVAL_EXAMPLES, schema.EVALUATE, result.examples)
    run.save(schema.EVAL_BY_CARRIES, schema.EVALUATE, result.by_carries)
    return {"exact_match": result.exact_match, "n": len(result.examples)}
