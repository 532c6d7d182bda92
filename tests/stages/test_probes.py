"""Stage `probes`: a sweep's folder, and targets checked against the task first."""

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.stages.probes import ProbesConfig
from arithinterp.tasks import TaskSpec


def test_a_probe_sweep_writes_its_folder(demo_runs):
    run = RunDir.open(demo_runs[0] / "tiny")
    key = "probes/digits"
    scores = run.load(schema.PROBE_SCORES, key)
    summary = run.load(schema.PROBE_SUMMARY, key)
    weights = run.load(schema.PROBE_WEIGHTS, key)
    assert set(summary["target"]) == set(scores["target"])
    assert set(scores["probe"] + ".coef") <= set(weights)
    assert run.stage_summary(key)["n_probes"] == scores["probe"].nunique()


def test_configs_are_checked():
    ProbesConfig(targets=("a0", "carries")).check(TaskSpec())
    with pytest.raises(ValueError, match=r"unknown targets \['carry9'\]"):
        ProbesConfig(targets=("carry9",)).check(TaskSpec())
    with pytest.raises(ValueError, match="n must be an integer >= 10"):
        ProbesConfig(n=5)
    with pytest.raises(ValueError, match="name must be"):
        ProbesConfig(name="a b")
