"""The shipped jobs: the demo end to end and resumed, the stages each job holds."""

import json

import pytest

from arithinterp import schema
from arithinterp.analysis.suite import LocalizeConfig
from arithinterp.catalog import list_runs
from arithinterp.runs import RunDir
from arithinterp.stages.job import check_job, job_json, job_seeds, run_job
from arithinterp.stages.llm import LLMConfig
from arithinterp.stages.model import ModelSource
from arithinterp.studies.demo import (
    DEFAULT_LLM,
    demo_finetune,
    demo_job,
    demo_localize,
    llm_job,
)


def test_the_shipped_demo_holds_every_analysis_and_the_llm_job_one_stage():
    job = demo_job(finetune=demo_finetune(), localize=demo_localize())
    assert check_job(job) == ["model", "evaluate", "localize/a1", "localize/carry2",
                              "probes/digits", "fourier", "finetune/sub"]
    assert job[0].source == "add3-reversed" and job[-1].select.experiment == "a1"
    assert check_job(demo_job("add3-plain", n_probe=None)) == ["model", "evaluate", "localize/a1"]
    assert llm_job() == [ModelSource(DEFAULT_LLM), LLMConfig()]


@pytest.mark.slow
def test_demo_writes_a_complete_run_and_resumes(tmp_path, ctx):
    job = demo_job(n_eval=200, localize=(LocalizeConfig(n_pairs=96, n_eval=96, n_random=3),),
                   n_probe=400)
    run = run_job(tmp_path, "demo", job, ctx=ctx).run
    assert run.is_complete and [r.name for r in list_runs(tmp_path)] == ["demo"]
    summary = run.load(schema.EVAL_SUMMARY, schema.EVALUATE)
    assert summary["n"] == 200 and summary["exact_match"] >= 0.99
    curve = run.load(schema.TRAINING_CURVE, schema.MODEL)
    assert {"step", "loss", "exact_match", "digit", "digit_accuracy"} <= set(curve.columns)
    assert run.load(schema.EVAL_EXAMPLES, schema.EVALUATE).shape[0] == 200
    loc = "localize/a1"
    for table in (schema.PATCHING, schema.ATTRIBUTION, schema.ATTRIBUTION_VS_EXACT,
                  schema.PATHS, schema.DLA, schema.LOGIT_LENS, schema.OPERAND_ATTENTION,
                  schema.RANKING, schema.KNOCKOUT):
        assert len(run.load(table, loc)) > 0, table.file
    summary = run.load(schema.LOCALIZE_SUMMARY, loc)
    assert summary["change"] == "a_1" and summary["metric"] == "logit_diff(c1)"
    assert summary["prompts"] == "held_out" and summary["clean_accuracy"] > 0.99
    # the heads that read column 1 carry a_1 into c1 (see the README's circuit notes)
    assert set(summary["selected"][:2]) == {"L0H1", "L0H2"}
    knock = run.load(schema.KNOCKOUT, loc).set_index("condition")
    random = knock[knock.index.str.startswith("random")]
    assert knock.loc["selected", "exact_match"] < random["exact_match"].min()
    assert random["components"].nunique() == len(random)
    probes = run.load(schema.PROBE_SUMMARY, "probes/digits").set_index("target")
    assert probes.loc["a0", "best_score"] > 0.95  # an operand digit at its own token
    assert {"W_E", "W_U"} <= set(run.load(schema.FOURIER_R2, schema.FOURIER)["source"])
    values = run.load(schema.PATCHING_VALUES, loc)
    assert values["z_pos_denoise"].shape == (2, 4, 14, summary["n_pairs"])
    axes = run.tensor_metadata(schema.PATCHING_VALUES, loc)
    assert json.loads(axes["z_pos_denoise"]) == ["layer", "head", "pos", "batch"]
    # the model is the run's own copy of the zoo model, not a pointer to it
    assert (run.dir / "model" / "model.safetensors").is_file()
    assert run.stage_summary("model")["source"] == "zoo:add3-reversed"
    with pytest.raises(FileExistsError):
        run_job(tmp_path, "demo", job, ctx=ctx)

    # an interrupted run (evaluate never finished) resumes without redoing 'model'
    partial = RunDir.create(tmp_path, "partial", config=job_json(job), seeds=job_seeds(job))
    partial.start_stage("model", "model")
    partial.finish_stage("model", {"note": "kept"})
    (partial.dir / "model").symlink_to(run.dir / "model")
    partial.close()
    resumed = run_job(tmp_path, "partial", job, ctx=ctx)
    assert resumed.run.is_complete and "model" not in resumed.ran
    assert resumed.run.stage_summary("model") == {"note": "kept"}
    assert resumed.run.load(schema.EVAL_SUMMARY, schema.EVALUATE)["n"] == 200
