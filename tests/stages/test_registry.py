"""The stage registry: every stage module is registered and satisfies `base.Stage`, and a
config names its stage and run folder."""

import dataclasses
import inspect
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest

from arithinterp import stages
from arithinterp.analysis.suite import LocalizeConfig
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, Stage
from arithinterp.stages.evaluate import EvaluateConfig
from arithinterp.stages.model import ModelSource
from arithinterp.stages.registry import STAGES, stage_key, stage_name

MACHINERY = {"__init__", "base", "registry", "job"}  # the modules that are not stages


@pytest.mark.parametrize("name", list(STAGES))
def test_every_registered_stage_satisfies_the_stage_protocol(name):
    stage = STAGES[name]
    assert isinstance(stage, Stage) and name == stage.NAME
    assert dataclasses.is_dataclass(stage.Config) and stage.Config.__dataclass_params__.frozen
    key, run = typing.get_type_hints(stage.key), typing.get_type_hints(stage.run)
    assert list(inspect.signature(stage.key).parameters) == ["config"]
    assert list(inspect.signature(stage.run).parameters) == ["config", "run", "ctx"]
    assert key == {"config": stage.Config, "return": str}
    assert run == {"config": stage.Config, "run": RunDir, "ctx": Context, "return": dict}


def test_every_stage_module_is_registered_once():
    modules = {p.stem for p in Path(stages.__file__).parent.glob("*.py")} - MACHINERY
    assert sorted(s.__name__.rsplit(".", 1)[1] for s in STAGES.values()) == sorted(modules)
    assert len({s.Config for s in STAGES.values()}) == len(STAGES)


def test_a_module_without_run_is_not_a_stage():
    assert not isinstance(SimpleNamespace(NAME="x", Config=EvaluateConfig, key=str), Stage)


def test_a_config_names_its_stage_and_run_folder():
    assert stage_name(LocalizeConfig()) == "localize"
    assert stage_key(LocalizeConfig(corrupt="carry", position=2)) == "localize/carry2"
    assert stage_key(ModelSource("add3-plain")) == "model"
    with pytest.raises(ValueError, match="object is not the config of a registered stage"):
        stage_name(object())
