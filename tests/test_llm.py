"""Arithmetic on a pretrained LLM: the tiny local Llama (rotary, RMSNorm, gated MLP, grouped-
query attention) goes through prompts, greedy evaluation, minimal pairs and the localization
pipeline; checked against Hugging Face generation, brute-force hooks and Python arithmetic.
SmolLM2 runs the same pipeline in the slow tests."""

from functools import partial

import pandas as pd
import pytest
import torch

from arithinterp import llm, schema
from arithinterp.analysis.paths import sweep_paths
from arithinterp.components import hook_name
from arithinterp.evaluate import run_greedy
from arithinterp.finetune import Schedule, copy_model, finetune
from arithinterp.pretrained import load_llm
from arithinterp.tasks import PromptSuite

SUITE = PromptSuite(op="+", digits=2, n_shots=2)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_llm(tiny_llama_dir)


def test_prompts_share_one_length_with_operand_labels(tiny):
    prompts = llm.make_prompts(tiny, SUITE, [(12, 35), (40, 17)])
    assert prompts.tokens.shape[0] == 2 and len(prompts.labels) == prompts.tokens.shape[1]
    assert prompts.labels[-6:] == ("1 (a1)", "2 (a0)", "+", "3 (b1)", "5 (b0)", "=")
    assert prompts.answers == (47, 57)
    assert prompts.target.tolist() == [tiny.tokenizer.encode("4")[0],
                                       tiny.tokenizer.encode("5")[0]]
    with pytest.raises(ValueError, match="tokenize to"):
        llm.make_prompts(tiny, SUITE, [(12, 35), (12, 3)])


def test_greedy_generation_equals_hugging_face_generate(tiny, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    prompts = llm.make_prompts(tiny, SUITE, SUITE.problems(6, seed=2))
    hf = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager").eval()
    expected = hf.generate(prompts.tokens, attention_mask=torch.ones_like(prompts.tokens),
                           max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(run_greedy(tiny.model, prompts.tokens, 5),
                       expected[:, prompts.tokens.shape[1]:])


def test_evaluation_scores_parsed_answers_against_python(tiny):
    result = llm.evaluate_llm(tiny, SUITE, SUITE.problems(12), batch_size=5)
    ex = result.examples
    assert len(ex) == 12 and (ex["answer"] == ex["a"] + ex["b"]).all()
    assert (ex["correct"] == (ex["parsed"] == ex["answer"]).fillna(False)).all()
    for row in ex.itertuples():  # parsed is the integer the continuation starts with
        assert (None if pd.isna(row.parsed) else row.parsed) == llm.parse_answer(row.generated)
    assert result.summary()["n"] == 12 and 0 <= result.exact_match <= 1


@pytest.mark.parametrize("text, expected", [
    ("47\n12", 47), (" -3\n", -3), ("x47", None), ("56<|im_end|>", 56), ("", None),
])
def test_parse_answer(text, expected):
    assert llm.parse_answer(text) == expected


def test_pairs_change_one_digit_keep_length_and_differ_in_the_first_answer_token(tiny):
    problems = SUITE.problems(40, seed=1)
    pairs = llm.make_llm_pairs(tiny, SUITE, problems, change="a", digit=1, n=10)
    assert len(pairs) == 10 and pairs.change == "a_1"
    assert pairs.clean.tokens.shape == pairs.corrupt.tokens.shape
    assert (pairs.clean.target != pairs.corrupt.target).all()
    for (a, b), (x, y) in zip(pairs.clean.problems, pairs.corrupt.problems, strict=True):
        assert y == b and a % 10 == x % 10 and a // 10 != x // 10
    ops = llm.make_llm_pairs(tiny, SUITE, problems, change="op", n=5)
    assert all("=" in t and t.split("\n")[-1][2] in "-*" for t in ops.corrupt.texts)
    with pytest.raises(ValueError, match="change must be one of"):
        llm.make_llm_pairs(tiny, SUITE, problems, change="c")
    with pytest.raises(ValueError, match="digit must be in 0..1"):
        llm.make_llm_pairs(tiny, SUITE, problems, change="b", digit=2)


def _brute_force_head_patch(model, base, donor, layer, head, metric):
    """The metric of `base` with one head's output (hook_z, every position) taken from
    `donor`, by a hook written here."""
    name = hook_name("z", layer)
    _, cache = model.run_with_cache(donor, names_filter=lambda n: n == name)

    def put(act, hook, value):
        act = act.clone()
        act[:, :, head] = value[:, :, head]
        return act

    with torch.inference_mode():
        return metric(model.run_with_hooks(base, fwd_hooks=[(name, partial(put,
                                                                          value=cache[name]))]))


def test_the_pipeline_on_a_grouped_query_llama(tiny):
    problems = SUITE.problems(60, seed=4)
    pairs = llm.make_llm_pairs(tiny, SUITE, problems, change="a", digit=1, n=12)
    config = llm.LLMLocalizeConfig(n_exact=6, top_k=2, n_random=3)
    out = llm.localize_llm(llm.SuiteSource(tiny, SUITE), pairs, config)
    metric = llm.pair_metric(pairs)
    # attribution covers every head (all positions) and every layer x position
    att = out.tables[schema.ATTRIBUTION]
    assert len(att[att["site"] == "z"]) == 2 * 4
    assert len(att[att["site"] == "resid_pre"]) == 2 * pairs.clean.tokens.shape[1]
    # the fast engine covers a Llama: every head exactly (equal to a brute-force hook, head
    # by head), the top MLPs, and the residual stream by layer x position
    exact = out.tables[schema.PATCHING]
    n_pos = pairs.clean.tokens.shape[1]
    assert (exact["site"] == "z").sum() == 2 * 4 and (exact["site"] == "mlp_out").sum() == 2
    assert (exact["site"] == "resid_pre").sum() == 2 * n_pos and out.summary[
        "exact_engine"] == "fast"
    resid = exact[exact["site"] == "resid_pre"].set_index(["layer", "pos"])["value"]
    with torch.no_grad():
        clean_metric = float(metric(tiny.model(pairs.clean.tokens)).mean())
        corrupt_metric = float(metric(tiny.model(pairs.corrupt.tokens)).mean())
    assert resid[(0, n_pos - 1)] != pytest.approx(clean_metric, abs=1e-3)  # one position
    first = int((pairs.clean.tokens != pairs.corrupt.tokens).any(0).nonzero()[0])
    assert resid[(0, first - 1)] == pytest.approx(corrupt_metric, abs=1e-5)  # nothing to restore
    assert set(out.tables[schema.RANKING]["component"]) == set(exact[~exact["by_pos"].astype(bool)][
        "component"])
    for row in exact[exact["site"] == "z"].itertuples():
        ref = _brute_force_head_patch(tiny.model, pairs.corrupt.tokens, pairs.clean.tokens,
                                      row.layer, row.head, metric)
        assert row.value == pytest.approx(float(ref.mean()), abs=1e-4)
    # DLA sums to the mean logit difference; the last lens layer is the model's own output
    s = out.summary
    assert out.tables[schema.DLA]["value"].sum() == pytest.approx(s["clean_metric"], abs=1e-3)
    lens = out.tables[schema.LOGIT_LENS]
    assert lens["accuracy"].iloc[-1] == pytest.approx(s["clean_first_token_accuracy"])
    # the knockout: selected heads and 3 distinct random draws, the top heads named
    ko = out.tables[schema.KNOCKOUT]
    assert list(ko["condition"]) == ["none", "selected", "random_0", "random_1", "random_2"]
    assert ko["components"].iloc[1] == ",".join(s["top_heads"]) and len(s["top_heads"]) == 2
    assert len(set(ko["components"].iloc[2:])) == 3
    # path patching of the top heads to the logits: their direct effect, brute force equal
    paths = out.tables[schema.PATHS]
    assert list(paths["sender"]) == s["top_heads"] and set(paths["receiver"]) == {"logits"}
    brute = sweep_paths(tiny.model, pairs, metric, senders=s["top_heads"], engine="hooks")
    assert paths["value"].to_numpy() == pytest.approx(brute["value"].to_numpy(), abs=1e-4)
    att_rows = out.tables[schema.OPERAND_ATTENTION]
    sums = att_rows.groupby("component")["attention"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-5)  # a + b + other
    assert set(att_rows["key"]) == {"a", "b", "other"}
    ranking = out.tables[schema.RANKING]
    assert isinstance(ranking, pd.DataFrame) and ranking["rank"].min() == 1


def test_the_pipeline_on_a_model_the_fast_engine_does_not_cover(tiny_gpt2_dir):
    """GPT-2 goes through hooks: the top heads by the estimate are patched exactly, each
    equal to a brute-force hook, and there is no residual grid."""
    gpt2 = load_llm(tiny_gpt2_dir)
    suite = PromptSuite(digits=2, n_shots=1)
    pairs = llm.make_llm_pairs(gpt2, suite, suite.problems(60, seed=4), change="a", digit=1,
                               n=6)
    out = llm.localize_llm(llm.SuiteSource(gpt2, suite), pairs,
                           llm.LLMLocalizeConfig(n_exact=3, top_k=2, n_random=1))
    exact, metric = out.tables[schema.PATCHING], llm.pair_metric(pairs)
    assert out.summary["exact_engine"] == "hooks"
    assert (exact["site"] == "z").sum() == 3 and not (exact["site"] == "resid_pre").any()
    for row in exact[exact["site"] == "z"].itertuples():
        ref = _brute_force_head_patch(gpt2.model, pairs.corrupt.tokens, pairs.clean.tokens,
                                      row.layer, row.head, metric)
        assert row.value == pytest.approx(float(ref.mean()), abs=1e-4)
    assert list(out.tables[schema.PATHS]["sender"]) == out.summary["top_heads"]


def test_bad_localize_config_names_the_field(tiny):
    with pytest.raises(ValueError, match="n_exact"):
        llm.LLMLocalizeConfig(n_exact=0)
    pairs = llm.make_llm_pairs(tiny, SUITE, SUITE.problems(20), change="a", digit=1, n=4)
    with pytest.raises(ValueError, match="top_k must be at most 8"):
        llm.localize_llm(llm.SuiteSource(tiny, SUITE), pairs, llm.LLMLocalizeConfig(top_k=9))


def test_answer_data_masks_the_answer_and_pads_on_the_right(tiny):
    suite = PromptSuite(n_shots=2)
    problems = [(3, 4), (9, 8)]  # answers of one and two tokens: one is padded
    data = llm.make_answer_data(tiny, suite, problems)
    eos = tiny.tokenizer.eos_id
    decode = tiny.tokenizer.decode
    lengths = [len(tiny.tokenizer.encode(llm.prompt_text(tiny, suite, a, b))) for a, b in problems]
    assert lengths[0] == lengths[1] and data.tokens.shape == (2, lengths[0] + 3)
    for row, (n, answer) in enumerate(zip(lengths, ["7", "17"], strict=True)):
        mask = data.loss_mask[row]
        assert decode(data.tokens[row, :n].tolist()) == llm.prompt_text(tiny, suite, *problems[row])
        assert decode(data.tokens[row, mask][:-1].tolist()) == answer
        assert int(data.tokens[row, mask][-1]) == eos  # the answer ends the sequence
        assert mask.sum() == len(answer) + 1 and not mask[:n].any()
    assert int(data.tokens[0, -1]) == eos and not data.loss_mask[0, -1]  # padding: no loss
    assert data.problems == tuple(problems)
    with pytest.raises(ValueError, match="no problems"):
        llm.make_answer_data(tiny, suite, [])


def test_padding_does_not_change_the_loss_of_a_causal_model(tiny):
    suite = PromptSuite(n_shots=2)
    mixed = llm.make_answer_data(tiny, suite, [(3, 4), (9, 8)])
    alone = llm.make_answer_data(tiny, suite, [(3, 4)])
    logits = [tiny.model(d.tokens)[0, :alone.tokens.shape[1]] for d in (mixed, alone)]
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
    model = copy_model(tiny.model)  # and the fine-tuning loop takes the data as it is
    result = finetune(model, mixed, Schedule(max_steps=2, batch_size=2, warmup_steps=0))
    assert len(result.curve) == 2 and result.curve["loss"].notna().all()



# ---- SmolLM2 ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_answers_one_digit_addition_and_localizes(smollm2):
    suite = PromptSuite(op="+", digits=1, n_shots=3)
    result = llm.evaluate_llm(smollm2, suite, suite.problems(24), batch_size=12)
    assert result.exact_match > 0.1  # measured 0.37 on 3-shot 1-digit addition
    pairs = llm.make_llm_pairs(smollm2, suite, result.correct_problems(), change="a", n=6)
    out = llm.localize_llm(llm.SuiteSource(smollm2, suite), pairs,
                           llm.LLMLocalizeConfig(n_exact=3, top_k=3, n_random=1))
    attribution = out.tables[schema.ATTRIBUTION]
    assert len(attribution[attribution["site"] == "z"]) == 30 * 9
    assert list(out.tables[schema.KNOCKOUT]["condition"]) == ["none", "selected", "random_0"]
    chat = PromptSuite(op="*", template="chat", n_shots=0)  # the reply is prefilled
    text = llm.prompt_text(smollm2, chat, 7, 8)
    assert text.endswith("What is 7*8?<|im_end|>\n<|im_start|>assistant\n7*8=")
    assert llm.evaluate_llm(smollm2, chat, chat.problems(8)).exact_match > 0.3


@pytest.mark.slow
def test_the_fast_engine_on_smollm2_equals_the_hook_engine(smollm2):
    from arithinterp.analysis.patching import PatchSpec, sweep_patching

    suite = PromptSuite(op="+", digits=1, n_shots=3)
    pairs = llm.make_llm_pairs(smollm2, suite, suite.problems(30), change="a", n=3)
    metric = llm.pair_metric(pairs)
    for spec in (PatchSpec("z", by_pos=False, layers=(20, 29)),
                 PatchSpec("resid_pre", layers=(28,)), PatchSpec("pattern", layers=(29,))):
        fast = sweep_patching(smollm2.model, pairs, spec, metric, engine="fast")
        hooks = sweep_patching(smollm2.model, pairs, spec, metric, engine="hooks")
        torch.testing.assert_close(fast.values, hooks.values, atol=1e-3, rtol=1e-4)
        assert fast.values.std() > 1e-3
