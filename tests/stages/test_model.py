"""Stage `model`: the run gets its own copy of a model; a missing zoo model is trained."""

import pytest
import torch

from arithinterp import schema
from arithinterp.checkpoints import load_model
from arithinterp.runs import RunDir
from arithinterp.stages.job import run_job
from arithinterp.stages.model import ModelSource
from arithinterp.training import recipes
from arithinterp.training.config import TrainConfig


def test_a_model_is_copied_into_the_run_with_its_history(tmp_path, demo_runs, ctx):
    _, trained = demo_runs
    run = run_job(tmp_path, "copy", [ModelSource(str(trained))], ctx=ctx).run
    for artifact in (schema.WEIGHTS, schema.CHECKPOINT_CONFIG, schema.TRAIN_CONFIG,
                     schema.TRAIN_FINAL, schema.TRAINING_CURVE):
        assert run.has(artifact, schema.MODEL), artifact.file
    assert run.stage_summary("model")["source"] == str((trained / "model").resolve())
    a, b = load_model(run.dir).model.state_dict(), load_model(trained).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert run.problems() == []


def test_a_zoo_model_missing_from_disk_is_trained_with_its_recipe(tmp_path, ctx, monkeypatch,
                                                                   tiny_task, tiny_spec):
    recipe = TrainConfig(task=tiny_task, model=tiny_spec, n_train=256, n_test=64,
                         batch_size=32, max_steps=4, eval_every=4, eval_size=32)
    monkeypatch.setitem(recipes.ZOO_RECIPES, "tiny-recipe", recipe)
    run = run_job(tmp_path, "r", [ModelSource("tiny-recipe")], ctx=ctx).run
    assert run.stage_summary("model")["source"] == "recipe:tiny-recipe"
    assert run.stage_summary("model")["steps"] == 4
    assert RunDir.open(run.dir).is_complete and load_model(run.dir).task == tiny_task
    with pytest.raises(ValueError, match="no recipe for 'nothing'"):
        ModelSource("nothing").check()
    with pytest.raises(ValueError, match="source must name"):
        ModelSource("")
