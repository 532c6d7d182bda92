"""What every command shares: help, bad input as one line with exit code 2 and nothing
written, config files read with named errors."""

import pytest


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
def test_bad_input_exits_2_with_one_line(argv, message, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(argv)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert list(tmp_path.iterdir()) == []  # nothing written half-way


def test_bad_config_files_are_one_line_errors(tmp_path, cli):
    (tmp_path / "bad.json").write_text('{"task": 3}')
    (tmp_path / "nested.json").write_text('{"task": {"digits": 3}}')
    for config, message in ((tmp_path / "bad.json", "task: expected an object, got 3"),
                            (tmp_path / "nested.json", "task: unknown keys ['digits']"),
                            (tmp_path, "Is a directory"), (tmp_path / "missing.json",
                                                           "No such file")):
        code, out, err = cli(["train", str(tmp_path / "x"), "--config", str(config)])
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err + out
    assert not (tmp_path / "x").exists()


def test_help_texts(cli):
    code, out, _ = cli([])
    assert code == 0 and "train" in out and "demo" in out
    code, out, _ = cli(["train", "--help"])
    assert code == 0 and "--recipe" in out and "reversed" in out


