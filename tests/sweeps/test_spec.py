"""A sweep's spec: axes, trials from a grid or a list, errors kept to their trial or refused
up front, TOML nones, and the shipped spec files."""

from pathlib import Path

import pytest

from arithinterp.models import ModelSpec
from arithinterp.sweeps.spec import Sweep, axis_fields, load_spec, make_trials, toml_nones
from arithinterp.tasks import TaskSpec
from arithinterp.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
BASE = TrainConfig(task=TaskSpec(digits_a=1, digits_b=1),
                   model=ModelSpec(n_layers=1, d_model=16, n_heads=2, d_mlp=32),
                   n_train=60, n_test=20, batch_size=16, max_steps=30, eval_every=10,
                   eval_size=20, warmup_steps=2, checkpoint_every=10, target_accuracy=0.9)


def test_axes_name_fields_of_the_config_its_task_and_its_model():
    assert [p for p, _ in axis_fields(BASE, "n_train")] == [("n_train",)]
    assert [p for p, _ in axis_fields(BASE, "format")] == [("task", "format")]
    assert [p for p, _ in axis_fields(BASE, "d_model")] == [("model", "d_model")]
    assert [p for p, _ in axis_fields(BASE, "seed")] == [("seed",), ("model", "seed")]
    assert [p for p, _ in axis_fields(BASE, "digits")] == [("task", "digits_a"),
                                                            ("task", "digits_b")]
    assert [p for p, _ in axis_fields(BASE, "model.seed")] == [("model", "seed")]
    with pytest.raises(ValueError, match="unknown field 'bogus'"):
        axis_fields(BASE, "bogus")
    with pytest.raises(ValueError, match="task.bogus is not a field of TaskSpec"):
        axis_fields(BASE, "task.bogus")


def test_a_grid_is_every_combination_named_from_its_values():
    sweep = Sweep(name="s", base=BASE, grid={"format": ["plain", "reversed"], "seed": [0, 1]})
    trials = make_trials(sweep)
    assert [t.name for t in trials] == ["s.format-plain.seed-0", "s.format-plain.seed-1",
                                        "s.format-reversed.seed-0", "s.format-reversed.seed-1"]
    last = trials[-1].configs[0]
    assert last.task.format == "reversed" and last.seed == 1 and last.model.seed == 1
    assert len({t.config_hash for t in trials}) == 4


def test_a_list_of_trials_and_its_errors():
    sweep = Sweep(name="s", base=BASE, trials=({"n_train": 50}, {"n_train": 60, "lr": 0.01}))
    first, second = make_trials(sweep)
    assert first.configs[0].n_train == 50 and second.configs[0].lr == 0.01
    assert first.values == {"n_train": 50} and sweep.axes == ["n_train", "lr"]
    with pytest.raises(ValueError, match="same configuration"):
        make_trials(Sweep(name="s", base=BASE, grid={"n_train": [60, 60]}))
    with pytest.raises(ValueError, match=r"grid.n_train: expected an integer, got 'x'"):
        make_trials(Sweep(name="s", base=BASE, grid={"n_train": [10, "x"]}))
    with pytest.raises(ValueError, match="grid.format: expected one of"):
        make_trials(Sweep(name="s", base=BASE, grid={"format": ["sideways"]}))
    with pytest.raises(ValueError, match="grid.seed: empty"):
        Sweep(name="s", base=BASE, grid={"seed": []})
    with pytest.raises(ValueError, match="exactly one"):
        Sweep(name="s", base=BASE)


def test_a_value_the_config_refuses_fails_only_its_trial():
    trials = make_trials(Sweep(name="s", base=BASE, grid={"n_heads": [2, 3]}))
    assert trials[0].error is None
    assert trials[1].configs is None and "divisible by n_heads (3)" in trials[1].error


def test_toml_none_is_none_where_a_field_can_be_none():
    data = toml_nones(TrainConfig, {"target_accuracy": "none", "task": {"format": "plain"},
                                    "model": {"normalization": "none", "act_fn": "relu"}})
    assert data == {"target_accuracy": None, "task": {"format": "plain"},
                    "model": {"normalization": None, "act_fn": "relu"}}


def test_the_shipped_specs_load():
    formats = load_spec(ROOT / "sweeps" / "formats.toml")
    assert len(make_trials(formats)) == 15 and formats.stages == ()
    assert formats.base.target_accuracy is None and formats.base.model.d_model == 64
    seeds = load_spec(ROOT / "sweeps" / "formats-seeds.toml")
    assert len(make_trials(seeds)) == 30 and seeds.axes == ["format", "n_train", "seed"]
