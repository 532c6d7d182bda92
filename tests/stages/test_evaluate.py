"""Stage `evaluate`: held-out accuracy written through the schema."""

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.stages.evaluate import EvaluateConfig


def test_evaluation_artifacts(demo_runs):
    run = RunDir.open(demo_runs[0] / "tiny")
    summary = run.load(schema.EVAL_SUMMARY, schema.EVALUATE)
    examples = run.load(schema.EVAL_EXAMPLES, schema.EVALUATE)
    by = run.load(schema.EVAL_BY_CARRIES, schema.EVALUATE)
    assert summary["n"] == len(examples) == 64 == int(by["count"].sum())
    assert summary["exact_match"] == pytest.approx(examples["correct"].mean())
    assert run.stage_summary("evaluate")["n"] == 64


@pytest.mark.parametrize("n", [0, -3, True])
def test_bad_sizes(n):
    with pytest.raises(ValueError, match="n must be None or a positive integer"):
        EvaluateConfig(n)
