"""Stage `llm`: a pretrained model's run records its source, evaluates, pairs and localizes
into one experiment folder the explorer reads; bad configs name the field; (slow) SmolLM2."""

import pytest

from arithinterp import schema
from arithinterp.llm import LLMLocalizeConfig
from arithinterp.stages.job import holds_job, read_job, run_job
from arithinterp.stages.llm import LLMConfig
from arithinterp.studies.demo import llm_job
from tests.conftest import BAD_CONFIG


def test_an_llm_run_records_its_source_and_writes_every_table(tiny_llm_run, tiny_llama_dir):
    run = tiny_llm_run[1]
    assert run.is_complete
    assert run.load(schema.SOURCE, schema.MODEL) == {"source": f"hf:{tiny_llama_dir}"}
    key = "localize/add2-few-shot-a1"
    for artifact in (schema.ATTRIBUTION, schema.PATCHING, schema.RANKING, schema.PATHS,
                     schema.DLA,
                     schema.LOGIT_LENS, schema.OPERAND_ATTENTION, schema.KNOCKOUT,
                     schema.LLM_EXAMPLES, schema.PAIRS):
        assert run.has(artifact, key), artifact.file
    summary = run.load(schema.LOCALIZE_SUMMARY, key)
    examples = run.load(schema.LLM_EXAMPLES, key)
    assert len(examples) == 10 and summary["evaluation"]["n"] == 10
    assert summary["n_pairs"] == 6 and summary["kept"].endswith("6 pairs from all of them")
    assert 1 <= summary["batch_size"] <= 64  # chosen to fit: the config left it unset
    pairs = run.load(schema.PAIRS, key)
    n_pos = pairs[schema.pair_keys("clean")["tokens"]].shape[1]
    assert len(summary["position_labels"]) == n_pos
    # every head, both MLPs, and the residual stream by layer x position (the fast engine)
    assert len(run.load(schema.PATCHING, key)) == 8 + 2 + 2 * n_pos
    assert len(run.load(schema.PATHS, key)) == 2  # the top heads' direct paths
    # 2-digit sums start with 1..9 only: no Fourier table over ten digits, and it says so
    assert not run.has(schema.LLM_FOURIER, key)
    assert any("no Fourier table" in w for w in summary["warnings"])
    config = read_job(run.manifest["config"])[1]
    assert holds_job(run, llm_job(f"hf:{tiny_llama_dir}", config)) and config.keep == "all"


@pytest.mark.parametrize("kwargs, field", [
    ({"n_eval": 0}, "n_eval"), ({"keep": "some"}, "keep"), ({"change": "c"}, "change"),
    ({"digit": 1}, "digit"), ({"name": "a b"}, "experiment name"),
])
def test_bad_llm_configs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        LLMConfig(**kwargs)


def test_a_task_model_is_refused(tmp_path, demo_runs, ctx):
    with pytest.raises(ValueError, match="use the localize stage"):
        run_job(tmp_path, "x", llm_job(str(demo_runs[1]), LLMConfig(n_eval=2)), ctx=ctx)


@pytest.mark.slow
def test_smollm2_localizes_the_problems_it_answers(tmp_path, smollm2_cache, monkeypatch, ctx):
    monkeypatch.setenv("ARITHINTERP_LLM_CACHE", str(smollm2_cache))
    config = LLMConfig(n_eval=16, n_pairs=4, localize=LLMLocalizeConfig(n_exact=3, top_k=3,
                                                                         n_random=1))
    run = run_job(tmp_path, "s", llm_job("llm:smollm2", config), ctx=ctx).run
    summary = run.load(schema.LOCALIZE_SUMMARY, "localize/add1-few-shot-a0")
    ev = summary["evaluation"]
    assert ev["n_correct"] > 0 and summary["n_pairs"] >= 1
    examples = run.load(schema.LLM_EXAMPLES, "localize/add1-few-shot-a0")
    assert examples["correct"].sum() == ev["n_correct"]
    assert (examples["answer"] == examples["a"] + examples["b"]).all()
