"""The main job: a complete, resumable run directory from the shipped model."""

from dataclasses import asdict

import pytest

from arithinterp.pipeline import DemoConfig, run_demo
from arithinterp.runs import RunDir, list_runs


@pytest.mark.slow
def test_demo_writes_a_complete_run_and_resumes(tmp_path):
    from arithinterp.analysis.suite import LocalizeConfig

    cfg = DemoConfig(n_eval=200, device="cpu",
                     localize=LocalizeConfig(n_pairs=96, n_eval=96, n_random=3), n_probe=400)
    run = run_demo(cfg, tmp_path, name="demo", progress=False)
    assert run.is_complete and [r.name for r in list_runs(tmp_path)] == ["demo"]
    summary = run.load_json("evaluate/summary.json")
    assert summary["n"] == 200 and summary["exact_match"] >= 0.99
    curve = run.load_table("model/training_curve.parquet")
    assert {"step", "loss", "exact_match", "digit", "digit_accuracy"} <= set(curve.columns)
    assert run.load_table("evaluate/examples.parquet").shape[0] == 200
    for table in ("patching", "attribution", "attribution_vs_exact", "paths", "dla",
                  "logit_lens", "operand_attention", "ranking", "knockout"):
        assert len(run.load_table(f"localize/{table}.parquet")) > 0, table
    summary = run.load_json("localize/summary.json")
    assert summary["change"] == "a_1" and summary["metric"] == "logit_diff(c1)"
    # the heads that read column 1 carry a_1 into c1 (see the README's circuit notes)
    assert set(summary["selected"][:2]) == {"L0H1", "L0H2"}
    knock = run.load_table("localize/knockout.parquet").set_index("condition")
    random = knock[knock.index.str.startswith("random")]
    assert knock.loc["selected", "exact_match"] < random["exact_match"].min()
    probes = run.load_table("probes/digits_summary.parquet").set_index("target")
    assert probes.loc["a0", "best_score"] > 0.95  # an operand digit at its own token
    assert {"W_E", "W_U"} <= set(run.load_table("fourier/r2.parquet")["source"])
    values = run.load_tensors("localize/patching.safetensors")
    assert values["z_pos_denoise"].shape == (2, 4, 14, summary["n_pairs"])
    with pytest.raises(FileExistsError):
        run_demo(cfg, tmp_path, name="demo", progress=False)

    # an interrupted run (evaluate stage never finished) resumes without redoing 'model'
    partial = RunDir.create(tmp_path, "partial", config=asdict(cfg),
                            seeds={"localize": cfg.localize.seed})
    partial.start_stage("model")
    partial.finish_stage("model", {"note": "kept"})
    resumed = run_demo(cfg, tmp_path, name="partial", progress=False)
    assert resumed.is_complete
    assert resumed.manifest["stages"]["model"]["summary"] == {"note": "kept"}
    assert resumed.load_json("evaluate/summary.json")["n"] == 200


@pytest.mark.slow
def test_localize_a_run_writes_a_new_run_for_its_model(tmp_path):
    from arithinterp.analysis.suite import LocalizeConfig
    from arithinterp.pipeline import run_localize

    first = run_localize("add3-reversed", LocalizeConfig(n_pairs=32, n_eval=32, n_random=1),
                         tmp_path, name="first", progress=False)
    config = LocalizeConfig(n_pairs=32, corrupt="carry", position=2, n_eval=32, n_random=1)
    second = run_localize(first.dir, config, tmp_path, name="second", progress=False)
    assert second.manifest["stages"]["model"]["summary"]["source"] == \
        first.manifest["stages"]["model"]["summary"]["source"]
    assert second.load_json("localize/summary.json")["change"] == "carry_2"


def test_bad_demo_config():
    with pytest.raises(ValueError, match="n_eval"):
        DemoConfig(n_eval=0)
