"""The core commands end to end: train then eval, runs, zoo, the demo."""

import json
from pathlib import Path

import pytest


def test_train_then_eval_from_the_command_line(tmp_path, cli):
    out_dir = tmp_path / "m"
    code, out, err = cli(["train", str(out_dir), "--digits", "1", "--n-layers", "1", "--d-model",
                          "32", "--n-heads", "2", "--steps", "6", "--batch-size", "16",
                          "--n-train", "64", "--n-test", "16", "--no-progress", "--device", "cpu"])
    assert code == 0, err
    assert "trained 6 steps" in out and "(sft)" in out
    code, out, err = cli(["eval", str(out_dir), "--json", "--device", "cpu"])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["n"] == 16 and 0.0 <= summary["exact_match"] <= 1.0
    code, _, err = cli(["train", str(out_dir), "--digits", "1", "--n-test", "16",
                        "--batch-size", "16", "--no-progress"])
    assert code == 2 and "complete run" in err


def test_runs_lists_problems_with_all(tmp_path, cli):
    from arithinterp.runs import RunDir

    good = RunDir.create(tmp_path, "good", config={}, seeds={})
    good.finish()
    bad = RunDir.create(tmp_path, "bad", config={}, seeds={})
    bad.start_stage("localize/a1")
    bad.fail_stage("localize/a1", "ValueError: no pairs")
    bad.close()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{")
    code, out, _ = cli(["runs", str(tmp_path)])
    assert code == 0 and "good" in out and "bad" not in out.split("not shown")[0]
    assert "2 unfinished, failed or damaged runs not shown" in out
    code, out, _ = cli(["runs", str(tmp_path), "--all"])
    assert "failed" in out and "no pairs" in out and "invalid" in out and "broken" in out
    (tmp_path / "afile").write_text("x")
    code, _, err = cli(["runs", str(tmp_path / "afile")])
    assert code == 2 and "is a file" in err


def test_zoo_lists_shipped_models_with_accuracy(cli):
    code, out, _ = cli(["zoo"])
    assert code == 0
    assert "add3-reversed" in out and "add3-plain" in out
    assert "mod113-add" in out and "8938" in out  # a modular model has its own task name


@pytest.mark.slow
def test_demo_no_serve_writes_a_run_the_explorer_loads(tmp_path, cli, monkeypatch):
    from streamlit.testing.v1 import AppTest

    code, out, err = cli(["demo", "--no-serve", "--runs-dir", str(tmp_path), "--name", "d",
                          "--n-eval", "100", "--no-progress", "--device", "cpu"])
    assert code == 0, err
    assert "run written to" in out and "arithinterp explore" in out
    # two experiments to switch between: a digit corruption and a carry flip
    stages = json.loads((tmp_path / "d" / "manifest.json").read_text())["stages"]
    assert {"localize/a1", "localize/carry2"} <= set(stages)
    monkeypatch.setenv("ARITHINTERP_RUNS_DIR", str(tmp_path))
    app = AppTest.from_file(str(Path(__file__).parents[2] / "apps" / "explorer.py"),
                            default_timeout=60).run()
    assert not app.exception
    assert any("add3" in m.value for m in app.markdown) or any(
        "add3" in str(e.value) for e in app.caption)
