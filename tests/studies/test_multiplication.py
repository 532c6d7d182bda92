"""The multiplication study: arms and seeds into runs, a report, reuse, the zoo."""

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.studies.multiplication import (
    MultiplicationStudy,
    arm_config,
    run_study,
    save_to_zoo,
)
from tests.conftest import BAD_CONFIG


def test_the_report_compares_every_arm_and_seed(quick_study):
    runs_dir, report = quick_study
    comparison = report.load(schema.STUDY_COMPARISON, "study")
    assert sorted(zip(comparison["arm"], comparison["seed"], strict=True)) == \
        [("aux", 0), ("icot", 0), ("sft", 0)]
    assert {"acc_c0", "mae_c3", "r2_W_E", "r2_resid_post"} <= set(comparison.columns)
    for row in comparison.itertuples():
        ev = RunDir.open(runs_dir / row.run).load(schema.EVAL_SUMMARY, schema.EVALUATE)
        assert row.exact_match == ev["exact_match"]
    curves = report.load(schema.STUDY_CURVES, "study")
    assert set(curves["arm"]) == {"sft", "icot", "aux"} and curves["digit_loss"].notna().all()
    assert report.stage_summary("study")["best"].keys() == {"sft", "icot", "aux"}


def test_a_rerun_reuses_finished_runs(quick_study, ctx):
    runs_dir, _ = quick_study
    before = RunDir.open(runs_dir / "q-aux-s0").manifest["stages"]
    run_study(MultiplicationStudy(name="q", scale="quick", seeds=(0,), n_analysis=300),
              runs_dir, ctx)
    after = RunDir.open(runs_dir / "q-aux-s0").manifest["stages"]
    assert {k: v["started"] for k, v in after.items()} == \
        {k: v["started"] for k, v in before.items()}


def test_the_best_run_of_each_arm_goes_to_the_zoo(quick_study, tmp_path):
    runs_dir, _ = quick_study
    study = MultiplicationStudy(name="q", scale="quick", seeds=(0,))
    written = save_to_zoo(study, runs_dir, zoo=tmp_path)
    assert sorted(written) == ["q-aux", "q-icot", "q-sft"]
    from arithinterp.checkpoints import load_model

    assert load_model(tmp_path / "q-icot").task.op == "mul"
    assert RunDir.open(tmp_path / "q-sft").is_complete


def test_arm_configs_follow_the_scale():
    default = MultiplicationStudy()
    icot = arm_config(default, "icot", 1)
    assert icot.mode == "icot" and icot.task.digits_a == 3 and icot.model.seed == icot.seed == 1
    assert arm_config(default, "aux", 0).mode == "aux"
    assert arm_config(default, "sft", 0).task.format == "reversed"
    paper = arm_config(MultiplicationStudy(scale="paper"), "sft", 0)
    assert (paper.task.digits_a, paper.model.d_model, paper.model.n_layers, paper.n_train) == \
        (4, 768, 2, 808_000)
    for kwargs, message in (({"arms": ("sft", "nope")}, "arms"), ({"seeds": ()}, "seeds"),
                            ({"aux_weight": -1.0}, "aux_weight"), ({"name": "a b"}, "name")):
        with pytest.raises(BAD_CONFIG, match=message):
            MultiplicationStudy(**kwargs)
