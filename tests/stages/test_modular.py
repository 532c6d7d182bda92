"""Stage `modular`: the Fourier picture and progress measures of a modular model, and the
existing localization running on it."""

import pytest

from arithinterp import schema
from arithinterp.analysis.suite import LocalizeConfig
from arithinterp.checkpoints import ZOO_DIR
from arithinterp.runs import RunDir
from arithinterp.stages.job import run_on
from arithinterp.stages.modular import ModularConfig


def test_the_tables_of_a_modular_model(modular_run):
    run, stage = modular_run, schema.MODULAR
    spectrum = run.load(schema.MOD_LOGIT_SPECTRUM, stage)
    assert spectrum["frequency"].tolist() == list(range(1, 12))
    summary = run.load(schema.MOD_SUMMARY, stage)
    assert sorted(spectrum.loc[spectrum["key"], "frequency"]) == summary["key_frequencies"]
    losses = run.load(schema.MOD_LOSSES, stage).set_index(["logits", "split"])
    assert set(losses.index) == {(k, s) for k in ("full", "restricted", "excluded")
                                 for s in ("train", "test")}
    assert summary["losses"]["full_train"]["accuracy"] == losses.loc[("full", "train"),
                                                                     "accuracy"]
    progress = run.load(schema.MOD_PROGRESS, stage)
    assert sorted(set(progress["step"])) == [0, 50, 100, 150, 200]
    assert summary["progress_from"] == "5 snapshots"
    assert progress.groupby("step").size().eq(6).all()
    # the last snapshot is the final model: same losses
    last = progress[(progress["step"] == 200)].set_index(["logits", "split"])
    assert last.loc[("full", "test"), "loss"] == pytest.approx(losses.loc[("full", "test"),
                                                                          "loss"], rel=1e-6)
    assert summary["memorized_step"] is not None  # 159 training pairs fit in 200 steps
    neurons = run.load(schema.MOD_NEURONS, stage)
    assert len(neurons) == 512 and neurons["frequency"].between(0, 11).all()
    probes = run.load(schema.MOD_PROBES, stage)
    assert {t.split("_")[1] for t in probes["target"]} == {"a", "b", "c"}
    assert probes["random_model"].notna().all()


def test_localization_runs_on_a_modular_model(modular_run, tmp_path, ctx):
    config = LocalizeConfig(digit=0, n_pairs=24, n_eval=48, n_random=1)
    run = run_on(str(modular_run.dir / schema.MODEL), [config], runs_dir=tmp_path, name="loc",
                 ctx=ctx).run
    ranking = run.load(schema.RANKING, config.key)
    assert len(ranking) and ranking["abs_effect"].notna().all()
    dla = run.load(schema.DLA, config.key)
    assert {"L0H0", "L0H3", "L0.mlp"} <= set(dla["component"])


def test_an_arithmetic_model_is_refused(demo_runs, tmp_path, ctx):
    with pytest.raises(ValueError, match="needs a modular task"):
        run_on(str(demo_runs[1] / schema.MODEL), [ModularConfig(probes=False)],
               runs_dir=tmp_path, name="x", ctx=ctx)
    with pytest.raises(ValueError, match="freqs"):
        ModularConfig(freqs=(0,))


@pytest.mark.slow
def test_a_zoo_model_brings_its_shipped_progress(tmp_path, ctx):
    """The zoo ships modadd-113 without its snapshots; its recorded progress table comes
    along, and the Fourier picture recomputed here is the shipped one."""
    run = run_on("modadd-113", [ModularConfig(probes=False)], runs_dir=tmp_path, name="g",
                 ctx=ctx).run
    summary = run.load(schema.MOD_SUMMARY, schema.MODULAR)
    assert summary["progress_from"] == "zoo:modadd-113"
    shipped = RunDir.open(ZOO_DIR / "modadd-113").load(schema.MOD_SUMMARY, schema.MODULAR)
    assert summary["key_frequencies"] == shipped["key_frequencies"]
    losses = summary["losses"]
    for name, value in shipped["losses"].items():
        assert losses[name] == pytest.approx(value, rel=1e-4)
    assert losses["restricted_test"]["accuracy"] == 1.0 > 0.05 > losses["excluded_test"][
        "accuracy"]
    assert summary["generalized_step"] > summary["memorized_step"]
    assert len(set(run.load(schema.MOD_PROGRESS, schema.MODULAR)["step"])) == 81
