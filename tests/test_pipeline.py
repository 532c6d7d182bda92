"""The main job: a complete, resumable run directory from the shipped model."""

import pytest

from arithinterp.pipeline import DemoConfig, run_demo
from arithinterp.runs import RunDir, list_runs


@pytest.mark.slow
def test_demo_writes_a_complete_run_and_resumes(tmp_path):
    cfg = DemoConfig(n_eval=200, device="cpu")
    run = run_demo(cfg, tmp_path, name="demo", progress=False)
    assert run.is_complete and [r.name for r in list_runs(tmp_path)] == ["demo"]
    summary = run.load_json("evaluate/summary.json")
    assert summary["n"] == 200 and summary["exact_match"] >= 0.99
    curve = run.load_table("model/training_curve.parquet")
    assert {"step", "loss", "exact_match", "digit", "digit_accuracy"} <= set(curve.columns)
    assert run.load_table("evaluate/examples.parquet").shape[0] == 200
    with pytest.raises(FileExistsError):
        run_demo(cfg, tmp_path, name="demo", progress=False)

    # an interrupted run (evaluate stage never finished) resumes without redoing 'model'
    partial = RunDir.create(tmp_path, "partial", config={**cfg.__dict__}, seeds={})
    partial.start_stage("model")
    partial.finish_stage("model", {"note": "kept"})
    resumed = run_demo(cfg, tmp_path, name="partial", progress=False)
    assert resumed.is_complete
    assert resumed.manifest["stages"]["model"]["summary"] == {"note": "kept"}
    assert resumed.load_json("evaluate/summary.json")["n"] == 200


def test_bad_demo_config():
    with pytest.raises(ValueError, match="n_eval"):
        DemoConfig(n_eval=0)
