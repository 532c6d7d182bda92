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
    (["train", "x", "--op", "mul", "--digits", "2", "--n-train", "9000"],
     "exceed the 8100 problems"),
    (["train", "x", "--mode", "icot", "--op", "add", "--format", "reversed", "--digits", "2"],
     "icot"),
    (["train", "x", "--mode", "aux", "--digits", "2"], "only multiplication has"),
    (["train", "x", "--mode", "aux", "--op", "mul", "--digits", "2", "--aux-weight", "-1"],
     "must be >= 0"),
    (["train", "x", "--aux-weight", "1"], "--aux-weight applies to --mode aux"),
    (["train", "x", "--device", "tpu"], "device must be"),
    (["localize", "add3-reversed", "--corrupt", "carry", "--position", "0"],
     "position must be in 1..3"),
    (["localize", "add3-reversed", "--task", "mul3x3-reversed"], "needs"),
    (["localize", "add3-reversed", "--pairs", "0"], "n_pairs must be a positive integer"),
    (["localize", "add3-reversed", "--add"], "--add needs a run directory"),
    (["runs", "nowhere"], "runs folder nowhere does not exist"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert list(tmp_path.iterdir()) == []  # nothing written half-way


def test_bad_config_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"task": 3}')
    (tmp_path / "nested.json").write_text('{"task": {"digits": 3}}')
    for config, message in ((tmp_path / "bad.json", "task: expected an object, got 3"),
                            (tmp_path / "nested.json", "task: unknown keys ['digits']"),
                            (tmp_path, "Is a directory"), (tmp_path / "missing.json",
                                                           "No such file")):
        code, out, err = run(["train", str(tmp_path / "x"), "--config", str(config)], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err + out
    assert not (tmp_path / "x").exists()


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
    assert "trained 6 steps" in out and "(sft)" in out
    code, out, err = run(["eval", str(out_dir), "--json", "--device", "cpu"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n"] == 16 and 0.0 <= summary["exact_match"] <= 1.0
    code, _, err = run(["train", str(out_dir), "--digits", "1", "--n-test", "16",
                        "--batch-size", "16", "--no-progress"], capsys)
    assert code == 2 and "complete run" in err


def test_runs_lists_problems_with_all(tmp_path, capsys):
    from arithinterp.runs import RunDir

    good = RunDir.create(tmp_path, "good", config={}, seeds={})
    good.finish()
    bad = RunDir.create(tmp_path, "bad", config={}, seeds={})
    bad.start_stage("localize/a1")
    bad.fail_stage("localize/a1", "ValueError: no pairs")
    bad.close()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    code, out, _ = run(["runs", str(tmp_path)], capsys)
    assert code == 0 and "good" in out and "bad" not in out.split("not shown")[0]
    assert "2 unfinished, failed or damaged runs not shown" in out
    code, out, _ = run(["runs", str(tmp_path), "--all"], capsys)
    assert "failed" in out and "no pairs" in out and "invalid" in out and "broken" in out
    (tmp_path / "afile").write_text("x")
    code, _, err = run(["runs", str(tmp_path / "afile")], capsys)
    assert code == 2 and "is a file" in err


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
