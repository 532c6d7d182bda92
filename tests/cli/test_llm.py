"""The llm commands: info and a whole run on the tiny local Llama, bad input refused in one
line with nothing written, and (slow) `llm info` on the embedded SmolLM2."""

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.stages.job import read_job


def test_llm_info_describes_a_local_model(cli, tiny_llama_dir):
    code, stdout, stderr = cli(["llm", "info", "--model", str(tiny_llama_dir)])
    assert code == 0, stderr
    assert "llama, 2 layers × 4 heads (2 key/value heads)" in stdout
    assert "579 -> ['5', '7', '9']" in stdout


def test_llm_run_writes_a_localization_the_explorer_reads(cli, tiny_llama_dir, tmp_path):
    code, stdout, stderr = cli([
        "llm", "run", "--model", str(tiny_llama_dir), "--digits", "2", "--shots", "2",
        "--n-eval", "8", "--change", "a", "--digit", "1", "--n-pairs", "6", "--n-exact", "4",
        "--top-k", "2", "--n-random", "2", "--runs-dir", str(tmp_path), "--name", "l",
        "--no-progress"])
    # a random tiny model answers nothing: the run says so in one line and is marked failed
    assert code == 2 and "answers none of 8 add2-few-shot problems" in stderr
    run = RunDir.open(tmp_path / "l")
    assert run.status == "failed"
    assert run.load(schema.SOURCE, schema.MODEL)["source"] == f"hf:{tiny_llama_dir}"
    assert [type(c).__name__ for c in read_job(run.manifest["config"])] == ["ModelSource",
                                                                              "LLMConfig"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "llm:gpt5"], "unknown embedded LLM 'gpt5'"),
    (["--digits", "9"], "digits must be in 1..6"),
    (["--op", "/"], "Invalid value for '--op'"),
    (["--digit", "3"], "digit must be in 0..0 for add1-few-shot"),
    (["--n-pairs", "0"], "n_pairs must be a positive integer"),
])
def test_bad_llm_run_options_are_one_line_and_write_nothing(cli, tmp_path, argv, message):
    code, _, stderr = cli(["llm", "run", *argv, "--runs-dir", str(tmp_path / "runs")])
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_llm_info_on_the_embedded_smollm2(cli, smollm2_cache, monkeypatch):
    monkeypatch.setenv("ARITHINTERP_LLM_CACHE", str(smollm2_cache))
    code, stdout, stderr = cli(["llm", "info"])
    assert code == 0, stderr
    assert "llm:smollm2: llama, 30 layers × 9 heads (3 key/value heads), d_model 576" in stdout
