"""The selective fine-tuning scenario: one run with every stage, reused on a rerun."""

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.studies.selective_finetuning import ADD, SUB, FinetuneScenario, run_scenario


def test_the_scenario_writes_one_run_with_every_stage(quick_scenario):
    run = quick_scenario
    assert run.is_complete and run.name == "q-base"
    assert set(run.manifest["stages"]) == {"model", "evaluate", "localize/sub-a1",
                                           "finetune/sub"}
    assert run.stage_summary("finetune/sub")["other_tasks"] == ["add2x2-reversed"]


def test_a_rerun_reuses_the_finished_run(quick_scenario, ctx):
    before = RunDir.open(quick_scenario.dir).manifest["stages"]
    scenario = FinetuneScenario.smoke("q")
    again = run_scenario(scenario, quick_scenario.dir.parent, ctx)
    assert again.manifest["stages"] == before


def test_the_full_scale_scenario_mixes_addition_with_signed_subtraction():
    cfg = FinetuneScenario().base_config()
    assert cfg.task == ADD and cfg.curriculum.tasks == (SUB,) and SUB.signed
    assert cfg.curriculum.weights == (3, 1) and cfg.model.d_model == 128
    stages = FinetuneScenario().stages()
    assert stages[1].only_correct and stages[2].select.top_k == 2
    assert stages[2].task == SUB and stages[2].other_tasks == (ADD,)
    assert schema.finetune_key("sub") == "finetune/sub"
