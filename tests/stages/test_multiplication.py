"""Stage `multiplication`: every view of a multiplication model, written through the schema."""

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.stages.job import run_on
from arithinterp.stages.multiplication import MultiplicationConfig


def test_the_views_of_a_multiplication_model(quick_study):
    runs_dir, _ = quick_study
    run = RunDir.open(runs_dir / "q-icot-s0")
    stage = schema.MULTIPLICATION
    sums = run.load(schema.MUL_RUNNING_SUMS, stage)
    assert sums["digit"].tolist() == [0, 1, 2, 3]
    assert (sums["mae"] >= 0).all() and sums["random_model_mae"].notna().all()
    probes = run.load(schema.MUL_PROBES, stage)
    assert set(probes["target"]) == {f"running_sum_{k}" for k in range(4)}
    graph = run.load(schema.MUL_ATTENTION_GRAPH, stage)
    assert (graph["attention"] >= 0.1).all() and (graph["key_pos"] <= graph["query_pos"]).all()
    pairs = run.load(schema.MUL_OPERAND_PAIRS, stage)
    assert pairs["i_plus_j"].equals(pairs["a_digit"] + pairs["b_digit"])
    attribution = run.load(schema.MUL_DIGIT_ATTRIBUTION, stage)
    assert set(attribution["digit"]) == {0, 1, 2, 3}
    fourier = run.load(schema.MUL_FOURIER, stage)
    assert set(fourier["model"]) == {"trained", "random"}
    assert set(fourier["source"]) == {"W_E", "mlp_out", "resid_post"}
    summary = run.load(schema.MUL_SUMMARY, stage)
    assert set(summary["running_sum_mae"]) == {"c0", "c1", "c2", "c3"}


def test_an_addition_model_is_refused(tmp_path, demo_runs, ctx):
    with pytest.raises(ValueError, match="needs a multiplication model"):
        run_on(str(demo_runs[1]), [MultiplicationConfig(n=50, n_attention=20)],
               runs_dir=tmp_path, name="x", ctx=ctx)
    with pytest.raises(ValueError, match="threshold"):
        MultiplicationConfig(threshold=0.0)
