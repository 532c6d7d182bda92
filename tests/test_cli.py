"""The command line: help, errors as one line with exit code 2, real commands end to end."""

import json
from pathlib import Path

import pytest

from arithinterp.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "No such command 'bogus'"),
    (["train", "x", "--format", "fancy"], "'--format'"),
    (["train", "x", "--steps", "abc"], "'--steps'"),
    (["train", "x", "--digits", "12"], "digits_a must be an integer in 1..9"),
    (["train", "x", "--recipe", "nope"], "no recipe for 'nope'"),
    (["eval"], "Missing argument"),
    (["eval", "no-such-model"], "neither a checkpoint directory nor a zoo model"),
    (["eval", "add3-reversed", "--n", "0"], "--n must be >= 1"),
    (["demo", "--model", "no-such-model", "--runs-dir", "unused"], "no recipe"),
    (["localize", "add3-reversed", "--corrupt", "foo"], "'--corrupt'"),
    (["localize", "add3-reversed", "--digit", "5"], "digit must be in 0..2"),
    (["localize", "add3-reversed", "--task", "add3-rev"], "is not of the form"),
    (["localize", "add3-reversed", "--answer-digit", "7"], "answer_digit must be in 0..3"),
    (["localize", "nowhere"], "neither a checkpoint directory nor a zoo model"),
    (["probe", "add3-reversed", "--targets", "bogus"], "unknown targets ['bogus']"),
    (["probe", "add3-reversed", "--n", "5"], "--n must be >= 10"),
    (["explore", "runs", "--port", "0"], "port must be in 1..65535"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


def test_help_texts(capsys):
    code, out, _ = run([], capsys)
    assert code == 0 and "train" in out and "demo" in out
    code, out, _ = run(["train", "--help"], capsys)
    assert code == 0 and "--recipe" in out and "reversed" in out


def test_train_then_eval_from_the_command_line(tmp_path, capsys):
    out_dir = tmp_path / "m"
    code, out, err = run(["train", str(out_dir), "--digits", "1", "--n-layers", "1", "--d-model",
                          "32", "--n-heads", "2", "--steps", "6", "--batch-size", "16",
                          "--n-train", "64", "--n-test", "16", "--no-progress", "--device", "cpu"],
                         capsys)
    assert code == 0, err
    assert "trained 6 steps" in out
    code, out, err = run(["eval", str(out_dir), "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n"] == 16 and 0.0 <= summary["exact_match"] <= 1.0
    code, _, err = run(["train", str(out_dir), "--digits", "1", "--no-progress"], capsys)
    assert code == 2 and "not empty" in err


def test_zoo_lists_shipped_models_with_accuracy(capsys):
    code, out, _ = run(["zoo"], capsys)
    assert code == 0
    assert "add3-reversed" in out and "add3-plain" in out


@pytest.mark.slow
def test_demo_no_serve_writes_a_run_the_explorer_loads(tmp_path, capsys, monkeypatch):
    from streamlit.testing.v1 import AppTest

    code, out, err = run(["demo", "--no-serve", "--runs-dir", str(tmp_path), "--name", "d",
                          "--n-eval", "100", "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "run written to" in out and "arithinterp explore" in out
    monkeypatch.setenv("ARITHINTERP_RUNS_DIR", str(tmp_path))
    app = AppTest.from_file(str(Path(__file__).parents[1] / "apps" / "explorer.py"),
                            default_timeout=60).run()
    assert not app.exception
    assert any("add3" in m.value for m in app.markdown) or any(
        "add3" in str(e.value) for e in app.caption)
