"""Jobs of stages: stored configs that read back equal, failures recorded, stages added to
an existing run."""

import json

import pytest

from arithinterp import schema
from arithinterp.analysis.suite import GridConfig, LocalizeConfig
from arithinterp.catalog import list_runs
from arithinterp.llm import LLMLocalizeConfig
from arithinterp.probes.sweep import ProbeConfig
from arithinterp.runs import RunDir
from arithinterp.stages.evaluate import EvaluateConfig
from arithinterp.stages.finetune import FinetuneConfig, Selection
from arithinterp.stages.fourier import FourierConfig
from arithinterp.stages.job import job_json, read_job, read_stage_config, run_job, run_on
from arithinterp.stages.llm import LLMConfig
from arithinterp.stages.llm_finetune import LLMFinetuneConfig
from arithinterp.stages.model import ModelSource
from arithinterp.stages.modular import ModularConfig
from arithinterp.stages.multiplication import MultiplicationConfig
from arithinterp.stages.probes import ProbesConfig
from arithinterp.stages.registry import STAGES, stage_key
from arithinterp.tasks import PromptSuite, TaskSpec
from arithinterp.training.config import TrainConfig
from arithinterp.training.plugins import ICoT, RunningSumLoss


@pytest.mark.slow
def test_localize_a_run_writes_a_new_run_and_adds_experiments(tmp_path, ctx):
    small = dict(n_pairs=32, n_eval=32, n_random=1)
    first = run_job(tmp_path, "first", [ModelSource("add3-reversed"), LocalizeConfig(**small)],
                    ctx=ctx).run
    carry = LocalizeConfig(corrupt="carry", position=2, **small)
    second = run_job(tmp_path, "second", [ModelSource(str(first.dir)), carry], ctx=ctx).run
    summary = second.load(schema.LOCALIZE_SUMMARY, "localize/carry2")
    # a flipped carry is measured at the digit it flows into
    assert summary["change"] == "carry_2" and summary["answer_digit"] == 2
    assert summary["metric"] == "logit_diff(c2)"
    # experiments added to a run: several per run, each in its own folder
    added = run_on(first.dir, [carry, LocalizeConfig(digit=0, **small)], runs_dir=tmp_path,
                   ctx=ctx)
    assert added.run.dir == first.dir and set(added.ran) == {"localize/carry2", "localize/a0"}
    again = RunDir.open(first.dir)
    assert again.is_complete
    assert schema.experiments(again.manifest["stages"], "localize") == ["a1", "carry2", "a0"]
    assert [type(c).__name__ for c in read_job(again.manifest["config"])] == \
        ["ModelSource", "LocalizeConfig", "LocalizeConfig", "LocalizeConfig"]
    with pytest.raises(ValueError, match="another config"):
        run_on(first.dir, [LocalizeConfig(n_pairs=16, n_eval=32, n_random=1)],
               runs_dir=tmp_path, ctx=ctx)
    with pytest.raises(ValueError, match="made from"):
        run_on("add3-plain", [FourierConfig(n=64)], runs_dir=tmp_path, name="first", ctx=ctx)


EVERY_STAGE = [
    ModelSource("add3-plain"),
    TrainConfig(task=TaskSpec(op="mul", digits_a=2, digits_b=2, format="cot"), n_test=500,
                curriculum=ICoT(tokens_per_stage=3, smoothing=0.5),
                extra_losses=(RunningSumLoss(weight=0.5, site="z", layer=0, heads=(1, 2)),)),
    EvaluateConfig(n=50),
    LocalizeConfig(name="first", corrupt="carry", position=2, grids=(
        GridConfig("z", by_pos=False, directions=("denoise", "noise"), attribution=True),)),
    ProbesConfig(name="sums", n=100, targets=("carries", "a0"),
                 fit=ProbeConfig(sites=("z",), layers=(1,), cv=3)),
    FourierConfig(n=50, sites=("resid_pre", "mlp_out"), layers=(0,)),
    MultiplicationConfig(n=100, n_attention=20, threshold=0.2,
                         fit=ProbeConfig(sites=("resid_post",), layers=(0,))),
    FinetuneConfig(name="ft2", select=Selection(experiment="first", top_k=2),
                   arms=("selected", "full"), seeds=(0, 1)),
    ModularConfig(freqs=(3, 24), probes=False),
    LLMConfig(suite=PromptSuite(op="*", digits=2, template="chat", n_shots=0), change="op",
              keep="all", localize=LLMLocalizeConfig(n_exact=5)),
    LLMFinetuneConfig(select=Selection(components=("L3H1", "L0.mlp")), name="llm",
                      suite=PromptSuite(op="-", digits=2), other_suites=(
                          PromptSuite(op="*", template="chat"),), text="/tmp/text.txt",
                      n_train=None, arms=("selected", "none"), seeds=(0, 2), rescale=True),
]


def test_every_registered_stage_is_covered():
    assert {type(c) for c in EVERY_STAGE} == {stage.Config for stage in STAGES.values()}


@pytest.mark.parametrize("config", EVERY_STAGE, ids=[type(c).__name__ for c in EVERY_STAGE])
def test_every_stage_config_round_trips_and_refuses_unknown_keys(config):
    data = json.loads(json.dumps(job_json([config])))
    assert read_job(data) == [config]
    entry = data["job"][0]["config"]
    with pytest.raises(ValueError, match=r"unknown keys \['bogus'\]") as e:
        read_job({"job": [{"stage": data["job"][0]["stage"],
                           "config": {**entry, "bogus": 1}}]})
    assert "\n" not in str(e.value)
    nested = next((k for k, v in entry.items() if isinstance(v, dict)), None)
    if nested is not None:  # a nested config refuses unknown keys too, naming the path
        with pytest.raises(ValueError, match=rf"\.{nested}: unknown keys \['bogus'\]"):
            read_job({"job": [{"stage": data["job"][0]["stage"],
                               "config": {**entry, nested: {**entry[nested], "bogus": 1}}}]})
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        read_job({"job": [{"stage": "nope", "config": {}}]})


@pytest.mark.slow
def test_configs_written_by_stages_load_back_equal(demo_runs):
    runs, trained = demo_runs
    for run_dir in (runs / "tiny", trained):
        run = RunDir.open(run_dir)
        job = read_job(run.manifest["config"])
        for config in job:
            assert read_stage_config(run, stage_key(config)) == config


def test_bad_input_writes_nothing(tmp_path, ctx):
    with pytest.raises(ValueError, match="no recipe for 'nope'"):
        run_job(tmp_path, "x", [ModelSource("nope")], ctx=ctx)
    with pytest.raises(ValueError, match="same folder twice"):
        run_job(tmp_path, "x", [ModelSource("add3-plain"), LocalizeConfig(), LocalizeConfig()],
                ctx=ctx)
    with pytest.raises(ValueError, match="is not the config of a registered stage"):
        run_job(tmp_path, "x", [object()], ctx=ctx)
    assert not any(tmp_path.iterdir())


def test_a_stage_that_fails_marks_itself_and_the_run_failed(tmp_path, ctx):
    job = [ModelSource("add3-plain"), LocalizeConfig(n_pairs=5000)]  # more pairs than exist
    with pytest.raises(ValueError, match="could not find 5000 pairs"):
        run_job(tmp_path, "r", job, ctx=ctx)
    run = RunDir.open(tmp_path / "r")
    assert run.status == "failed" and run.stage_done("model")
    stage = run.manifest["stages"]["localize/a1"]
    assert stage["status"] == "failed" and "could not find 5000 pairs" in stage["error"]
    assert run.problems() == [f"stage localize/a1 failed: {stage['error']}"]
    assert list_runs(tmp_path) == []  # failed: not listed as a finished run
