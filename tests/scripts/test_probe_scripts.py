"""The scripts in probes/: end to end on the shipped model into one run; bad input exits 2."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir

SCRIPTS = Path(__file__).resolve().parents[2] / "probes"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"probe_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_three_scripts_write_into_one_run(tmp_path, capsys):
    common = ["--n", "64", "--layers", "1", "--no-progress"]
    digits = _script("digit_probes").main(["add3-reversed", "--runs-dir", str(tmp_path),
                                           "--run", "p", "--targets", "a0", "carries", *common])
    assert digits == 0
    assert "carry1" in capsys.readouterr().out
    run_dir = tmp_path / "p"
    assert _script("running_sum_probes").main([str(run_dir), *common]) == 0
    assert "no running sums" in capsys.readouterr().out
    assert _script("fourier_report").main([str(run_dir), *common]) == 0
    assert "W_E" in capsys.readouterr().out

    run = RunDir.open(run_dir)
    assert run.is_complete
    stages = run.manifest["stages"]
    assert stages["model"]["summary"]["source"] == "zoo:add3-reversed"
    assert {"probes/digits", "probes/running_sums", "fourier"} <= set(stages)
    table = run.load(schema.PROBE_SCORES, "probes/digits")
    assert {"a0", "carry1", "n_carries"} <= set(table["target"])
    assert table["layer"].eq(1).all() and table["random_model"].notna().all()
    sums = run.load(schema.PROBE_SCORES, "probes/running_sums")
    assert set(sums["target"]) == {f"column_sum_{k}" for k in range(4)}
    preds = run.load(schema.PROBE_PREDICTIONS, "probes/running_sums")
    assert set(preds["probe"]) == set(sums["probe"]) and {"truth", "prediction"} <= set(preds)
    assert not run.has(schema.PROBE_PREDICTIONS, "probes/digits")
    weights = run.load(schema.PROBE_WEIGHTS, "probes/digits")
    assert set(table["probe"] + ".coef") <= set(weights)
    spectrum = run.load(schema.FOURIER_SPECTRUM, schema.FOURIER)
    assert {"W_E", "W_U", "activations"} == set(spectrum["source"])
    stage = run.load_json("probes/digits/stage.json")
    assert stage["stage"] == "probes" and stage["config"]["n"] == 64

    # the model named again with the same --run adds to that run
    again = _script("fourier_report").main(["add3-reversed", "--runs-dir", str(tmp_path),
                                            "--run", "p", *common])
    assert again == 0 and [p.name for p in tmp_path.iterdir()] == ["p"]


@pytest.mark.parametrize("argv, message", [
    (["no-such-model"], "neither a checkpoint directory nor a zoo model"),
    (["add3-reversed", "--targets", "carry9"], "unknown targets"),
    (["add3-reversed", "--n", "2"], "n must be an integer >= 10, got 2"),
    (["add3-reversed", "--n", "many"], "invalid int value"),
    (["add3-reversed", "--sites", "resid_final"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    digit_probes = _script("digit_probes")
    try:
        code = digit_probes.main([*argv, "--runs-dir", str(tmp_path), "--no-progress"])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("error:")
    assert not any(tmp_path.iterdir())  # nothing half-made


def test_scripts_run_as_scripts():
    out = subprocess.run([sys.executable, str(SCRIPTS / "running_sum_probes.py"), "--help"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and "RUN_OR_MODEL" in out.stdout and "--runs-dir" in out.stdout


def test_running_sums_of_a_multiplication_checkpoint(tmp_path, capsys):
    from arithinterp.checkpoints import save_model
    from arithinterp.models import ModelSpec, build_model
    from arithinterp.tasks import TaskSpec

    task, spec = TaskSpec(op="mul", digits_a=2, digits_b=2), ModelSpec(d_model=16, n_heads=2)
    save_model(build_model(spec, task), spec, task, tmp_path / "mul")
    code = _script("running_sum_probes").main([
        str(tmp_path / "mul"), "--runs-dir", str(tmp_path / "runs"), "--run", "m", "--n", "64",
        "--layers", "1", "--positions", "5", "--no-progress"])
    assert code == 0 and "no running sums" not in capsys.readouterr().out
    table = RunDir.open(tmp_path / "runs" / "m").load(schema.PROBE_SCORES, "probes/running_sums")
    assert {"pp_1_1", "running_sum_2", "running_sum_2_mod10", "running_sum_2_div10"} <= \
        set(table["target"])
    assert table["pos"].eq(5).all()
