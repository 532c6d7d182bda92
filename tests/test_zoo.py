"""The shipped models: small, pickle-free, and as accurate as their records say."""

import json

import pytest

from arithinterp.evaluate import evaluate
from arithinterp.models import ZOO_DIR, load_model, zoo_names
from arithinterp.pipeline import held_out_split
from arithinterp.train import TrainConfig, zoo_recipe


def test_zoo_ships_the_addition_models():
    assert {"add3-reversed", "add3-plain"} <= set(zoo_names())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["add3-reversed", "add3-plain"])
def test_zoo_model_meets_its_recorded_accuracy(name):
    path = ZOO_DIR / name
    assert sum(f.stat().st_size for f in path.iterdir()) < 5 * 2**20
    recorded = json.loads((path / "metrics.json").read_text())
    trained_with = TrainConfig.from_dict(json.loads((path / "train_config.json").read_text()))
    assert trained_with == zoo_recipe(name)
    loaded = load_model(path)
    test = held_out_split(path, loaded)
    assert len(test) == recorded["n"] == 2000
    result = evaluate(loaded.model, test)
    assert result.exact_match >= 0.99
    assert result.exact_match == pytest.approx(recorded["exact_match"], abs=1e-9)
    assert result.digit_accuracy == pytest.approx(recorded["digit_accuracy"], abs=1e-9)
