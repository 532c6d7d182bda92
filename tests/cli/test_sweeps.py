"""The sweep command: bad specs refused in one line with nothing started, --status, a
serial sweep end to end."""

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir

TOP = 'name = "c"\nstages = []\n'
GOOD = TOP + """[base]
n_train = 40
n_test = 20
batch_size = 16
max_steps = 10
eval_every = 10
eval_size = 20
warmup_steps = 1
target_accuracy = "none"
[base.task]
digits_a = 1
digits_b = 1
[base.model]
n_layers = 1
d_model = 16
n_heads = 2
d_mlp = 32
"""


@pytest.mark.parametrize("top, tail, message", [
    (TOP, "[grid]\nbogus = [1, 2]", "c.toml: unknown field 'bogus'"),
    (TOP, "[grid]\nn_train = []", "c.toml: grid.n_train: empty"),
    (TOP, "[grid]\nn_train = [40, 'many']",
     "c.toml: grid.n_train: expected an integer, got 'many'"),
    (TOP, "[grid]\nformat = ['plain', 'upside-down']", "c.toml: grid.format: expected one of"),
    (TOP, "[grid]\nseed = [0, 0]", "are the same configuration"),
    (TOP, "[grid]\nn_train = 40", "c.toml: grid.n_train: expected a list of values"),
    (TOP, "", "c.toml: give the values to vary as a grid or as a list of trials"),
    (TOP + "colour = 'red'\n", "[grid]\nseed = [0]", "c.toml: unknown keys ['colour']"),
    ('name = "c"\n', "[grid]\nseed = [0]\n[stages.nonsense]",
     "c.toml: stages.nonsense: unknown stage"),
    ('name = "c"\n', "[grid]\nseed = [0]\n[stages.evaluate]\nn = 'all'",
     "c.toml: stages.evaluate.n:"),
    (TOP, "[grid\nseed = [0]", "c.toml: not valid TOML"),
])
def test_a_bad_spec_is_one_line_and_starts_nothing(top, tail, message, cli, tmp_path):
    spec = tmp_path / "c.toml"
    spec.write_text(GOOD.replace(TOP, top) + "\n" + tail + "\n")
    code, out, err = cli(["sweep", str(spec), "--serial", "--runs-dir", str(tmp_path / "runs")])
    assert code == 2, out
    assert err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert not (tmp_path / "runs").exists()  # nothing started


def test_a_missing_spec_and_serial_with_an_address(cli, tmp_path):
    code, _, err = cli(["sweep", str(tmp_path / "none.toml")])
    assert code == 2 and "no sweep spec at" in err
    spec = tmp_path / "c.toml"
    spec.write_text(GOOD + "[grid]\nseed = [0]\n")
    code, _, err = cli(["sweep", str(spec), "--serial", "--address", "auto"])
    assert code == 2 and "--serial runs without Ray" in err


def test_status_then_a_serial_sweep(cli, tmp_path):
    spec = tmp_path / "c.toml"
    spec.write_text(GOOD + "[grid]\nseed = [0, 1]\nn_heads = [2, 3]\n")
    runs = str(tmp_path / "runs")
    code, out, err = cli(["sweep", str(spec), "--status", "--runs-dir", runs])
    assert code == 0, err
    assert "2 pending, 2 failed" in out and "divisible" in out
    assert not (tmp_path / "runs").exists()  # --status writes nothing
    code, out, err = cli(["sweep", str(spec), "--serial", "--runs-dir", runs, "--no-progress"])
    assert code == 0, err
    assert "2 done, 2 failed" in out and "results written to" in out
    table = RunDir.open(tmp_path / "runs" / "c-sweep").load(schema.SWEEP_TRIALS, "sweep")
    assert table["status"].tolist() == ["done", "failed", "done", "failed"]
    assert {"seed", "n_heads", "exact_match", "steps_to_target", "wall_seconds"} \
        <= set(table.columns)
    code, out, _ = cli(["sweep", str(spec), "--status", "--runs-dir", runs])
    assert "2 done, 2 failed" in out
