"""Training configs: refused with the field named, a json round trip, fitted defaults."""

import json

import pytest

from arithinterp.tasks import TaskSpec
from arithinterp.training.config import TrainConfig, with_mode
from arithinterp.training.plugins import ICoT, RunningSumLoss
from tests.conftest import BAD_CONFIG
from tests.training.conftest import TINY


@pytest.mark.parametrize("kwargs, field", [
    ({"n_train": 0}, "n_train"), ({"lr": 0.0}, "lr"), ({"batch_size": 10_000}, "batch_size"),
    ({"target_accuracy": 1.5}, "target_accuracy"), ({"sampling": "zipf"}, "sampling"),
])
def test_bad_train_configs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        TrainConfig(**{**TINY.__dict__, **kwargs})


def test_config_json_round_trip_rejects_unknown_keys():
    assert TrainConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    with pytest.raises(ValueError, match=r"unknown keys \['epochs'\]"):
        TrainConfig.from_dict({**TINY.to_dict(), "epochs": 3})


@pytest.mark.parametrize("kwargs, message", [
    ({"task": TaskSpec(op="mul", digits_a=2, digits_b=2), "n_train": 8100},
     r"n_train \(8100\) \+ n_test \(64\) exceed the 8100 problems"),
    ({"curriculum": ICoT()}, "curriculum icot trains format 'cot'"),
    ({"extra_losses": (RunningSumLoss(),)}, "only multiplication has"),
])
def test_configs_that_cannot_train_are_refused_before_anything_is_written(tmp_path, kwargs,
                                                                          message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{**TINY.__dict__, **kwargs})
    with pytest.raises(ValueError, match="weight"):
        RunningSumLoss(weight=-1.0)


def test_default_training_set_fits_the_task():
    small = TrainConfig(task=TaskSpec(op="mul", digits_a=2, digits_b=2), n_test=2000)
    assert small.n_train is None and small.train_size == 8100 - 2000
    assert TrainConfig().train_size == 50_000


def test_unknown_and_wrongly_typed_nested_keys_are_one_line_errors():
    bad = TINY.to_dict()
    for data, message in (({**bad, "task": 3}, r"training config.task: expected an object"),
                          ({**bad, "task": {**bad["task"], "digitz": 3}},
                           r"training config.task: unknown keys \['digitz'\]"),
                          ({**bad, "curriculum": {"kind": "nope"}},
                           r"curriculum.kind: expected one of"),
                          ({**bad, "lr": "fast"}, r"training config.lr: expected a number")):
        with pytest.raises(ValueError, match=message) as e:
            TrainConfig.from_dict(data)
        assert "\n" not in str(e.value)


def test_with_mode_renders_the_chain_or_refuses_it():
    mul = TrainConfig(**{**TINY.__dict__, "task": TaskSpec(op="mul", digits_a=2, digits_b=2,
                                                           format="reversed")})
    icot = with_mode(mul, "icot")
    assert icot.mode == "icot" and icot.curriculum == ICoT() and icot.task.format == "cot"
    cot = with_mode(icot, "cot")
    assert cot.mode == "cot" and cot.curriculum is None
    assert with_mode(mul, "aux").extra_losses == (RunningSumLoss(),)
    with pytest.raises(ValueError, match="trains on the answer only"):
        with_mode(icot, "sft")
    with pytest.raises(ValueError, match="only applies to mode aux"):
        with_mode(mul, "sft", aux_weight=1.0)
