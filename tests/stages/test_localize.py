"""Stage `localize`: one experiment's folder, with every artifact and the axes of its tensors."""

import json

import torch

from arithinterp import schema
from arithinterp.analysis.suite import GridConfig, LocalizeConfig
from arithinterp.runs import RunDir
from arithinterp.stages.job import run_on
from arithinterp.tasks import TaskSpec


def test_an_experiment_writes_its_folder(demo_runs):
    run = RunDir.open(demo_runs[0] / "tiny")
    key = "localize/a1"
    summary = run.load(schema.LOCALIZE_SUMMARY, key)
    for artifact in (schema.PATCHING, schema.ATTRIBUTION, schema.RANKING, schema.KNOCKOUT,
                     schema.PATCHING_VALUES, schema.PAIRS, schema.ACTIVATION_CACHE):
        assert run.has(artifact, key), artifact.file
    values = run.load(schema.PATCHING_VALUES, key)
    axes = run.tensor_metadata(schema.PATCHING_VALUES, key)
    for grid, names in axes.items():
        assert values[grid].ndim == len(json.loads(names))
    pairs = run.load(schema.PAIRS, key)
    assert pairs[schema.pair_keys("clean")["tokens"]].shape == (summary["n_pairs"], 11)
    assert run.stage_summary(key)["change"] == "a_1"


def test_another_task_of_the_same_vocabulary(tmp_path, demo_runs, ctx):
    _, trained = demo_runs
    plain = TaskSpec(digits_a=2, digits_b=2, format="plain")
    config = LocalizeConfig(task=plain, n_pairs=16, n_eval=16, n_random=1, paths=False,
                            grids=(GridConfig("resid_pre"),), save_cache=False)
    run = run_on(str(trained), [config], runs_dir=tmp_path, name="plain", ctx=ctx).run
    summary = run.load(schema.LOCALIZE_SUMMARY, config.key)
    assert summary["task"] == "add2x2-plain"
    assert schema.from_json(TaskSpec, summary["task_spec"]) == plain
    tokens = run.load(schema.PAIRS, config.key)[schema.pair_keys("clean")["tokens"]]
    assert torch.equal(tokens[:, 7:10] >= 3, torch.ones_like(tokens[:, 7:10], dtype=torch.bool))
