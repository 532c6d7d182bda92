"""Stage `llm_finetune`: every arm and seed of a pretrained LLM fine-tuned from the same base,
scored by fresh evaluations and perplexities (reproduced here from the saved weights), only
the selected slices changed, and bad input refused before anything trains."""

from dataclasses import replace

import pytest
import torch

from arithinterp import schema
from arithinterp.components import Component
from arithinterp.evaluate import compute_perplexity, make_text_windows, read_text
from arithinterp.finetune import component_masks
from arithinterp.llm import evaluate_llm
from arithinterp.models import LoadedModel, ModelSpec, build_model
from arithinterp.pretrained import load_pretrained
from arithinterp.stages.finetune import Selection
from arithinterp.stages.llm_finetune import LLMFinetuneConfig, check, training_problems
from arithinterp.tasks import PromptSuite, TaskSpec
from tests.conftest import BAD_CONFIG, LLM_FT_SELECTION

KEY = "finetune/ft"


@pytest.fixture(scope="module")
def base(tiny_llama_dir):
    return load_pretrained(tiny_llama_dir)


def _tuned(base, weights, prefix):
    """The base model with the tensors one arm changed put back in."""
    state = base.model.state_dict()
    state.update({k.split("/", 1)[1]: v for k, v in weights.items() if k.startswith(prefix)})
    model = load_pretrained(base.source).model
    model.load_state_dict(state)
    return replace(base, model=model.eval())


def test_every_arm_and_seed_is_scored_by_a_real_run(tiny_llm_finetune, base):
    _, run, config = tiny_llm_finetune
    table = run.load(schema.FINETUNE_COMPARISON, KEY)
    arms = table.drop_duplicates(["arm", "draw", "seed"])
    assert sorted(zip(arms["arm"], arms["draw"], arms["seed"], strict=True)) == sorted(
        (arm, draw, seed) for seed in (0, 1) for arm, draw in
        (("selected", 0), ("random", 0), ("random", 1), ("full", 0), ("none", 0)))
    assert len(table) == 10 * 2  # and two suites each
    assert set(zip(table["task"], table["role"], strict=True)) == {
        ("add2-few-shot", "target"), ("mul1-few-shot", "other")}
    selected = table[table["arm"] == "selected"]
    assert set(selected["components"]) == {",".join(LLM_FT_SELECTION)}
    masks = component_masks(base.model, LLM_FT_SELECTION)
    assert (selected["n_params"] == sum(int(m.sum()) for m in masks.values())).all()
    randoms = table[table["arm"] == "random"]["components"]
    assert randoms.nunique() == 4  # two distinct draws per seed, each a head and an MLP
    for names in randoms:
        kinds = sorted(Component.parse(n).kind for n in names.split(","))
        assert kinds == ["head", "mlp"] and names != ",".join(LLM_FT_SELECTION)
    # the numbers come from real runs: the saved weights reproduce the scores
    windows = make_text_windows(base, read_text(), window=32, n=4, seed=0)
    ppl = compute_perplexity(base.model, windows)
    assert table["ppl_before"].tolist() == pytest.approx([ppl] * len(table), rel=1e-6)
    weights = run.load(schema.FINETUNE_WEIGHTS, KEY)
    for arm in ("selected.0.s1", "full.0.s0"):
        tuned = _tuned(base, weights, arm + "/")
        row = table[(table["arm"] == arm.split(".")[0]) & (table["seed"] == int(arm[-1]))]
        assert row["ppl_after"].iloc[0] == pytest.approx(compute_perplexity(tuned.model,
                                                                            windows), rel=1e-5)
        assert row["ppl_after"].iloc[0] != pytest.approx(ppl, rel=1e-3)
        for _, r in row.iterrows():
            suite = config.suite if r["role"] == "target" else config.other_suites[0]
            problems = suite.problems(config.n_eval)
            assert r["exact_after"] == evaluate_llm(tuned, suite, problems).exact_match
    curves = run.load(schema.FINETUNE_CURVES, KEY)
    assert set(curves["arm"]) == {"selected", "random", "full"}
    for _, curve in curves.groupby(["arm", "draw", "seed"]):
        assert list(curve["step"]) == [0, 1, 2, 3, 4, 5, 6]  # step 0: the base model
        assert curve["exact_match"].notna().tolist() == [True] + [False, False, True] * 2
        assert curve["exact_match"].iloc[0] == evaluate_llm(
            base, config.suite, config.suite.problems(min(config.n_probe, config.n_eval))
        ).exact_match
        assert curve["loss"].iloc[0] != curve["loss"].iloc[0]  # no training loss before step 1
        assert curve["loss"].iloc[-1] < curve["loss"].iloc[1]  # it learned the answers
    summary = run.load(schema.FINETUNE_SUMMARY, KEY)
    assert summary["target"] == "add2-few-shot" and summary["other_tasks"] == ["mul1-few-shot"]
    assert summary["perplexity_before"] == pytest.approx(ppl, rel=1e-6)
    assert summary["n_train"] == 40 and set(summary["seconds"]["train_step"]) == {
        "selected", "random", "full"}


def test_the_none_arm_changes_nothing(tiny_llm_finetune):
    _, run, _ = tiny_llm_finetune
    table = run.load(schema.FINETUNE_COMPARISON, KEY)
    none = table[table["arm"] == "none"]
    assert (none["change"] == 0).all() and (none["n_params"] == 0).all()
    assert (none["ppl_after"] == none["ppl_before"]).all() and (none["seconds"] == 0).all()
    weights = run.load(schema.FINETUNE_WEIGHTS, KEY)
    assert {k.split("/", 1)[0] for k in weights} == {
        f"{arm}.s{seed}" for seed in (0, 1)
        for arm in ("selected.0", "random.0", "random.1", "full.0")}


def test_the_selected_arm_changes_only_the_selected_slices_bitwise(tiny_llm_finetune, base):
    _, run, _ = tiny_llm_finetune
    weights = run.load(schema.FINETUNE_WEIGHTS, KEY)
    state = base.model.state_dict()
    masks = component_masks(base.model, LLM_FT_SELECTION)
    for seed in (0, 1):
        changed = {k.split("/", 1)[1]: v for k, v in weights.items()
                   if k.startswith(f"selected.0.s{seed}/")}
        assert set(changed) == set(masks)  # no other tensor moved at all
        for key, value in changed.items():
            m = masks[key]
            assert torch.equal(value[~m], state[key][~m]), key
            assert not torch.equal(value[m], state[key][m]), key
        d = 8  # head 3 shares key/value head 1 with head 2: its rows move, head 0's do not
        for kv in ("blocks.0.attn.k.weight", "blocks.0.attn.v.weight"):
            assert torch.equal(changed[kv][:d], state[kv][:d])
            assert not torch.equal(changed[kv][d:], state[kv][d:])
        q = "blocks.0.attn.q.weight"
        assert torch.equal(changed[q][:3 * d], state[q][:3 * d])


def test_a_selection_from_the_llm_localization_takes_its_suite(tiny_llm_run, base):
    _, run = tiny_llm_run
    experiment = "add2-few-shot-a1"
    config = LLMFinetuneConfig(select=Selection(experiment=experiment, top_k=2), n_eval=12,
                               window=32, n_windows=2, n_random=1)
    plan = check(config, run, base)
    ranked = run.load(schema.RANKING, schema.localize_key(experiment))
    assert [c.name for c in plan.components] == \
        ranked[ranked["kind"] == "head"]["component"].head(2).tolist()
    assert plan.suite == PromptSuite(digits=2, n_shots=2) and plan.windows.shape == (2, 32)
    held_out = set(plan.suite.problems(12))
    train = training_problems(config, plan.suite, seed=0)
    assert len(train) == 2_000 and not held_out & set(train)  # none of them is scored


@pytest.mark.parametrize("change, message", [
    ({"select": Selection(components=("L9H0",))}, "is not in this model"),
    ({"select": Selection(experiment="nope")}, "no llm localization 'nope'"),
    ({"other_suites": (PromptSuite(digits=2, n_shots=2),)}, "repeat the target suite"),
    # 100 one-digit problems - 2 shots - 12 held out
    ({"n_train": 500, "suite": PromptSuite(n_shots=2)}, "has 86 problems outside the 12 held"),
    ({"window": 300}, "exceeds the model's context of 256"),
    ({"n_windows": 100_000}, "100000 asked for"),
    ({"text": "/no/such/text.txt"}, "neither"),
    ({"n_random": 500}, "distinct random sets"),
])
def test_bad_input_is_refused_before_anything_trains(tiny_llm_run, base, change, message):
    config = LLMFinetuneConfig(select=Selection(experiment="add2-few-shot-a1", top_k=2),
                               n_eval=12, window=32, n_windows=2)
    with pytest.raises(ValueError, match=message):
        check(replace(config, **change), tiny_llm_run[1], base)


def test_an_experiment_needs_a_run_and_a_task_model_is_refused(base):
    select = Selection(experiment="add2-few-shot-a1")
    with pytest.raises(ValueError, match="needs a run"):
        check(LLMFinetuneConfig(select=select), None, base)
    task = TaskSpec(digits_a=1, digits_b=1)
    spec = ModelSpec(n_layers=1, d_model=16, n_heads=2, d_mlp=32)
    with pytest.raises(ValueError, match="use the finetune stage"):
        check(LLMFinetuneConfig(select=select), None,
              LoadedModel(build_model(spec, task), spec, task, task.vocab))


@pytest.mark.parametrize("kwargs, field", [
    ({"arms": ("best",)}, "arms"), ({"seeds": (1, 1)}, "seeds"), ({"window": 1}, "window"),
    ({"n_windows": 0}, "n_windows"), ({"n_train": 0}, "n_train"),
    ({"eval_every": -1}, "eval_every"), ({"name": "a/b"}, "fine-tuning name"),
    ({"suite": PromptSuite(), "other_suites": (PromptSuite(),)}, "other_suites"),
])
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        LLMFinetuneConfig(select=Selection(components=("L0H0",)), **kwargs)
