"""The shipped models: small, pickle-free, and as accurate as their records say."""

import pytest

from arithinterp import schema
from arithinterp.checkpoints import ZOO_DIR, load_model, zoo_names
from arithinterp.evaluate import evaluate
from arithinterp.runs import RunDir
from arithinterp.stages.job import read_job
from arithinterp.studies.multiplication import MultiplicationStudy, arm_config
from arithinterp.training.checkpoints import held_out_split
from arithinterp.training.config import TrainConfig
from arithinterp.training.recipes import zoo_recipe


def test_zoo_ships_the_addition_multiplication_and_grokking_models():
    assert {"add3-reversed", "add3-plain", "modadd-113", "mul3-sft", "mul3-icot",
            "mul3-aux"} <= set(zoo_names())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "n_test"), [("add3-reversed", 2000), ("add3-plain", 2000),
                                             ("modadd-113", 113 * 113 - 3831)])
def test_zoo_model_meets_its_recorded_accuracy(name, n_test):
    run = RunDir.open(ZOO_DIR / name)  # the zoo is a set of shipped, complete runs
    assert run.is_complete and run.problems() == []
    assert sum(f.stat().st_size for f in run.dir.rglob("*") if f.is_file()) < 5 * 2**20
    path = run.dir / schema.MODEL
    recorded = run.load(schema.TRAIN_FINAL, schema.MODEL)
    trained_with = TrainConfig.from_dict(run.load(schema.TRAIN_CONFIG, schema.MODEL))
    assert trained_with == zoo_recipe(name) == read_job(run.manifest["config"])[0]
    loaded = load_model(name)
    test = held_out_split(path, loaded.task)
    assert len(test) == recorded["n"] == n_test
    result = evaluate(loaded.model, test)
    assert result.exact_match >= 0.99
    assert result.exact_match == pytest.approx(recorded["exact_match"], abs=1e-9)
    assert result.digit_accuracy == pytest.approx(recorded["digit_accuracy"], abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["sft", "icot", "aux"])
def test_shipped_multiplication_arms_meet_their_recorded_accuracy(arm):
    """The best run of each arm of `arithinterp multiply --zoo`: trained with the study's
    own config for its arm and seed, analysed, and as accurate as its evaluation says."""
    run = RunDir.open(ZOO_DIR / f"mul3-{arm}")
    assert run.is_complete and run.problems() == []
    assert {schema.MODEL, schema.EVALUATE, schema.MULTIPLICATION} <= set(run.manifest["stages"])
    assert sum(f.stat().st_size for f in run.dir.rglob("*") if f.is_file()) < 5 * 2**20
    trained_with = TrainConfig.from_dict(run.load(schema.TRAIN_CONFIG, schema.MODEL))
    assert trained_with.mode == arm
    assert trained_with == arm_config(MultiplicationStudy(), arm, trained_with.seed)
    recorded = run.load(schema.EVAL_SUMMARY, schema.EVALUATE)
    loaded = load_model(f"mul3-{arm}")
    test = held_out_split(run.dir / schema.MODEL, loaded.task)
    assert len(test) == recorded["n"] == 2000
    result = evaluate(loaded.model, test)
    assert result.exact_match == pytest.approx(recorded["exact_match"], abs=1e-9)
    assert result.digit_accuracy == pytest.approx(recorded["digit_accuracy"], abs=1e-9)
