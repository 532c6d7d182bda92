"""The shipped models: small, pickle-free, and as accurate as their records say."""

import pytest

from arithinterp import schema
from arithinterp.evaluate import evaluate
from arithinterp.models import ZOO_DIR, load_model, zoo_names
from arithinterp.runs import RunDir
from arithinterp.stages.job import read_job
from arithinterp.train import TrainConfig, held_out_split, zoo_recipe


def test_zoo_ships_the_addition_and_grokking_models():
    assert {"add3-reversed", "add3-plain", "modadd-113"} <= set(zoo_names())


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
