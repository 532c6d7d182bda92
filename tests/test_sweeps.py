"""Sweeps: trials from a spec, Ray and serial backends agreeing bitwise, resuming, failures
kept to their trial, and the results table."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from arithinterp import schema
from arithinterp.models import ModelSpec
from arithinterp.runs import RunDir
from arithinterp.stages import train as train_stage
from arithinterp.sweeps import (
    Sweep,
    axis_fields,
    load_spec,
    make_trials,
    results_table,
    run_sweep,
    toml_nones,
)
from arithinterp.tasks import TaskSpec
from arithinterp.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
BASE = TrainConfig(task=TaskSpec(digits_a=1, digits_b=1),
                   model=ModelSpec(n_layers=1, d_model=16, n_heads=2, d_mlp=32),
                   n_train=60, n_test=20, batch_size=16, max_steps=30, eval_every=10,
                   eval_size=20, warmup_steps=2, checkpoint_every=10, target_accuracy=0.9)
SPEC = """
name = "tiny"
stages = ["evaluate"]
[base]
n_train = 60
n_test = 20
batch_size = 16
max_steps = {steps}
eval_every = {eval_every}
eval_size = 20
warmup_steps = 2
checkpoint_every = 10
target_accuracy = "none"
[base.task]
digits_a = 1
digits_b = 1
[base.model]
n_layers = 1
d_model = 16
n_heads = 2
d_mlp = 32
[grid]
seed = [0, 1]
{lr}
"""


def write_spec(tmp_path, steps=30, eval_every=10, lr="lr = [0.001, 0.003]"):
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC.format(steps=steps, eval_every=eval_every, lr=lr))
    return path


def weights(runs_dir, trial):
    return load_file(Path(runs_dir) / trial / schema.WEIGHTS.at(schema.MODEL))


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


@pytest.mark.slow
def test_ray_and_serial_give_the_same_runs_bitwise(tmp_path):
    sweep = load_spec(write_spec(tmp_path))
    started = []
    ray_table = run_sweep(sweep, tmp_path / "ray", backend="ray", workers=2, progress=False,
                          on_start=started.append)
    serial_table = run_sweep(sweep, tmp_path / "serial", backend="serial", progress=False)
    assert len(started) == 1 and started[0] > 0
    assert ray_table["status"].tolist() == ["done"] * 4
    for name in ray_table["trial"]:
        run = RunDir.open(tmp_path / "ray" / name)
        assert run.is_complete and set(run.manifest["stages"]) == {"model", "evaluate"}
        a, b = weights(tmp_path / "ray", name), weights(tmp_path / "serial", name)
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    cols = ["trial", "exact_match", "steps", "evaluate.exact_match"]
    assert ray_table[cols].equals(serial_table[cols])
    assert ray_table.loc[0, "lr"] == 0.001 and ray_table.loc[1, "lr"] == 0.003
    stored = RunDir.open(tmp_path / "ray" / "tiny-sweep").load(schema.SWEEP_TRIALS, "sweep")
    assert stored["trial"].tolist() == ray_table["trial"].tolist()


def test_a_rerun_skips_complete_trials(tmp_path, monkeypatch):
    sweep = load_spec(write_spec(tmp_path))
    first = run_sweep(sweep, tmp_path / "runs", backend="serial", progress=False)
    assert first["status"].tolist() == ["done"] * 4
    called = []
    monkeypatch.setattr("arithinterp.sweeps.run_trial", lambda *a, **k: called.append(a))
    again = run_sweep(sweep, tmp_path / "runs", backend="serial", progress=False)
    assert called == [] and again["status"].tolist() == ["done"] * 4
    assert again["exact_match"].tolist() == first["exact_match"].tolist()


def test_a_trial_that_raises_is_recorded_and_the_others_complete(tmp_path, monkeypatch):
    real = train_stage.train

    def flaky(config, *args, **kwargs):
        if config.seed == 1 and config.lr == 0.003:
            raise RuntimeError("loss went to NaN")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(train_stage, "train", flaky)
    sweep = load_spec(write_spec(tmp_path))
    table = run_sweep(sweep, tmp_path / "runs", backend="serial", progress=False)
    assert table["status"].tolist() == ["done", "done", "done", "failed"]
    assert table.loc[3, "error"] == "RuntimeError: loss went to NaN"
    assert math.isnan(table.loc[3, "exact_match"])
    report = RunDir.open(tmp_path / "runs" / "tiny-sweep")
    assert report.is_complete and report.stage_summary("sweep") == {"trials": 4, "done": 3,
                                                                   "failed": 1}
    assert results_table(sweep, tmp_path / "runs")["error"].tolist()[3] \
        == "RuntimeError: loss went to NaN"  # read back from the failed run


@pytest.fixture(scope="module")
def long_spec(tmp_path_factory):
    """Two trials of 600 steps, and their runs made without interruption."""
    tmp = tmp_path_factory.mktemp("long")
    spec = write_spec(tmp, steps=600, eval_every=300, lr="")
    run_sweep(load_spec(spec), tmp / "reference", backend="serial", progress=False)
    return spec, tmp / "reference"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_sweep_finishes_on_rerun_as_if_uninterrupted(tmp_path, sig, long_spec):
    spec, reference = long_spec
    sweep = load_spec(spec)
    second = tmp_path / "runs" / make_trials(sweep)[1].name
    argv = [str(Path(sys.executable).parent / "arithinterp"), "sweep", str(spec), "--serial",
            "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a shell's background job ignores SIGINT and its children inherit that: restore it
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = second / schema.MODEL / schema.CHECKPOINT_DIR
    while not checkpoint.is_dir():  # wait on state: the second trial has a checkpoint
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again to continue" in err
    assert not RunDir.open(second).is_complete  # stopped mid-training
    table = run_sweep(sweep, tmp_path / "runs", backend="serial", progress=False)
    assert table["status"].tolist() == ["done"] * 2
    for name in table["trial"]:
        a, b = weights(tmp_path / "runs", name), weights(reference, name)
        assert all((a[k] == b[k]).all() for k in a), name
