"""The study commands end to end at smoke size, and their bad input."""

import shutil

import pytest

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.stages.job import read_job


@pytest.mark.parametrize("argv, message", [
    (["finetune", "add3-reversed"], "select components by name or name a localization"),
    (["finetune", "add3-reversed", "--components", " , "], "--components is empty"),
    (["finetune", "add3-reversed", "--components", "L9H0"], "L9H0"),
    (["finetune", "add3-reversed", "--components", "L0H0", "--experiment", "a1"],
     "not both"),
    (["finetune", "add3-reversed", "--components", "L0H0", "--arms", "bogus"], "arms"),
    (["finetune", "add3-reversed", "--components", "L0H0", "--suite", "add1-few-shot"],
     "--suite: for pretrained LLMs"),
    (["finetune", "llm:gpt5", "--components", "L0H0"], "unknown embedded LLM 'gpt5'"),
    (["multiply", "--scale", "huge"], "'--scale'"),
    (["multiply", "--quick", "--arms", "nope"], "arms"),
    (["finetune-scenario", "--quick", "--steps", "0"], "steps must be an integer >= 1"),
    (["finetune-scenario", "--quick", "--seeds", "1", "--seeds", "1"], "seeds must be distinct"),
    (["finetune-scenario", "--quick", "--name", "a/b"], "a/b"),
    (["modular", "add3-reversed"], "needs a modular task"),
    (["modular", "add3-reversed", "--freqs", "a,b"], "--freqs must be integers"),
    (["train", "x", "--task", "mod1-add"], "p must be an integer in 2..2000"),
    (["train", "x", "--task", "mod5000-add"], "p must be an integer in 2..2000"),
    (["train", "x", "--task", "mod7-div"], "op must be one of"),
    (["train", "x", "--task", "mod7-add", "--train-fraction", "1.5"],
     "train_fraction must be in (0, 1)"),
    (["train", "x", "--task", "mod7-add", "--train-fraction", "0"],
     "train_fraction must be in (0, 1)"),
    (["train", "x", "--task", "mod7-add", "--digits", "2"], "--task names the whole task"),
    (["train", "x", "--task", "mod7-add", "--train-fraction", "0.3", "--n-test", "4"],
     "not both"),
])
def test_bad_input_exits_2_with_one_line(argv, message, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(argv)
    assert code == 2, out
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert list(tmp_path.iterdir()) == []  # nothing written half-way


def test_train_a_modular_model_then_analyse_it(tmp_path, cli):
    code, out, err = cli(["train", str(tmp_path / "m11"), "--task", "mod11-add",
                          "--train-fraction", "0.5", "--steps", "40", "--no-progress"])
    assert code == 0, err
    assert "on 61 problems" in out  # 121 pairs: round(60.5) = 60 train, 61 held out
    run = RunDir.open(tmp_path / "m11")
    config = run.load(schema.TRAIN_CONFIG, schema.MODEL)
    assert config["batch_size"] == config["n_train"] == 60  # full batch, as in the recipe
    code, out, err = cli(["modular", str(tmp_path / "m11"), "--freqs", "1,3", "--no-probes",
                          "--no-progress"])
    assert code == 0, err
    assert "key frequencies: [1, 3]" in out and "restricted" in out
    assert run.load(schema.MOD_SUMMARY, schema.MODULAR)["progress_from"] == "1 snapshot"


def test_finetune_named_components_of_a_zoo_model(tmp_path, cli):
    code, out, err = cli(["finetune", "add3-reversed", "--components", "L1H0,L0.mlp",
                          "--n-random", "1", "--steps", "3", "--batch-size", "16",
                          "--runs-dir", str(tmp_path), "--run-name", "ft", "--no-progress"])
    assert code == 0, err
    table = RunDir.open(tmp_path / "ft").load(schema.FINETUNE_COMPARISON, "finetune/ft")
    assert set(table["arm"]) == {"selected", "random", "full", "none"}
    assert "held-out exact match after fine-tuning" in out


def test_multiply_quick(tmp_path, cli):
    code, out, err = cli(["multiply", "--quick", "--seeds", "0", "--arms", "sft", "--runs-dir",
                          str(tmp_path), "--name", "q", "--no-progress"])
    assert code == 0, err
    assert "report written to" in out and (tmp_path / "q-study").is_dir()
    comparison = RunDir.open(tmp_path / "q-study").load(schema.STUDY_COMPARISON, "study")
    assert comparison["arm"].tolist() == ["sft"]


def test_finetune_scenario_quick(tmp_path, cli):
    code, out, err = cli(["finetune-scenario", "--quick", "--steps", "10", "--runs-dir",
                          str(tmp_path), "--name", "q", "--no-progress"])
    assert code == 0, err
    run = RunDir.open(tmp_path / "q-base")
    table = run.load(schema.FINETUNE_COMPARISON, "finetune/sub")
    assert set(table["arm"]) == {"selected", "random", "full", "none"}
    assert set(table["role"]) == {"target", "other"} and table["seed"].tolist().count(0) == 10
    assert "finetune/sub" in out and f"run written to {run.dir}" in out


LLM_BUDGET = ["--steps", "2", "--batch-size", "4", "--n-eval", "4", "--n-train", "20",
              "--window", "16", "--text-windows", "2", "--no-progress", "--device", "cpu"]


@pytest.fixture
def llm_run(tiny_llm_run, tmp_path):
    """A copy of the tiny Llama's run with its llm localization."""
    path = tmp_path / "llm"
    shutil.copytree(tiny_llm_run[1].dir, path)
    return path


def test_finetune_an_llm_run_from_its_localization(cli, llm_run):
    code, out, err = cli(["finetune", str(llm_run), "--experiment", "add2-few-shot-a1",
                          "--top-k", "2", "--n-random", "1", "--other-suite", "mul1-few-shot",
                          "--shots", "2", *LLM_BUDGET])
    assert code == 0, err
    run = RunDir.open(llm_run)
    table = run.load(schema.FINETUNE_COMPARISON, "finetune/ft")
    assert set(table["arm"]) == {"selected", "random", "full", "none"}
    assert set(zip(table["task"], table["role"], strict=True)) == {
        ("add2-few-shot", "target"), ("mul1-few-shot", "other")}  # the localization's suite
    ranked = run.load(schema.RANKING, "localize/add2-few-shot-a1")
    top = ranked[ranked["kind"] == "head"]["component"].head(2).tolist()
    assert set(table[table["arm"] == "selected"]["components"]) == {",".join(top)}
    assert "ppl_after" in out and "run written to" in out
    assert [type(c).__name__ for c in read_job(run.manifest["config"])] == [
        "ModelSource", "LLMConfig", "LLMFinetuneConfig"]


def test_finetune_an_llm_source_by_named_components(cli, tiny_llama_dir, tmp_path):
    code, _, err = cli(["finetune", f"hf:{tiny_llama_dir}", "--components", "L0H3,L1.mlp",
                        "--arms", "selected", "--arms", "none", "--suite", "add1-few-shot",
                        "--shots", "2", "--runs-dir", str(tmp_path), "--run-name", "x",
                        *LLM_BUDGET])
    assert code == 0, err
    table = RunDir.open(tmp_path / "x").load(schema.FINETUNE_COMPARISON, "finetune/ft")
    assert table["task"].tolist() == ["add1-few-shot"] * 2
    assert table["components"].tolist() == ["L0H3,L1.mlp", ""]


@pytest.mark.parametrize("argv, message", [
    (["--components", "L9H0"], "L9H0"),
    (["--experiment", "nope"], "no llm localization 'nope'"),
    (["--components", "L0H0", "--task", "add1x1-plain"],
     "--task, --other-task: for models trained on a task"),
    (["--components", "L0H0", "--suite", "div1-chat"], "is not of the form"),
    (["--components", "L0H0", "--window", "1000"], "exceeds the model's context"),
    (["--components", "L0H0", "--text", "/no/such/text"], "neither"),
    (["--components", "L0H0", "--n-eval", "100"], "0 problems outside the 97 held out"),
])
def test_bad_llm_finetune_input_is_one_line_and_writes_nothing(cli, llm_run, argv, message):
    before = {p: p.read_bytes() for p in llm_run.rglob("*") if p.is_file()}
    code, out, err = cli(["finetune", str(llm_run), *argv, "--no-progress"])
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert {p: p.read_bytes() for p in llm_run.rglob("*") if p.is_file()} == before
