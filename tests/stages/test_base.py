"""What every stage shares: a run's model, and refusing models without a task."""

import pytest

from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model


def test_run_model_needs_a_finished_model_stage(tmp_path, demo_runs, ctx):
    run = RunDir.create(tmp_path, "empty", config={}, seeds={})
    with pytest.raises(ValueError, match="no finished model stage"):
        run_model(run, ctx)
    run.close()
    loaded = run_model(RunDir.open(demo_runs[0] / "tiny"), ctx)
    assert loaded.task.name == "add2x2-reversed" and loaded.path.name == "model"
    need_task(loaded, "x")
    with pytest.raises(ValueError, match="probing needs a model trained on an arithmetic task"):
        need_task(loaded.__class__(loaded.model, None, None), "probing")
    assert Context().device == "auto" and Context().progress
