"""Running sweeps: Ray and serial backends agreeing bitwise, resuming, and failures kept to
their trial."""

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
from arithinterp.runs import RunDir
from arithinterp.stages import train as train_stage
from arithinterp.sweeps.results import results_table
from arithinterp.sweeps.run import run_sweep
from arithinterp.sweeps.spec import load_spec, make_trials

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
    monkeypatch.setattr("arithinterp.sweeps.run.run_trial", lambda *a, **k: called.append(a))
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
