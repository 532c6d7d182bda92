"""Ranking, selection and knockout: hand-made tables, exact ablation invariants, and the
shipped add3-reversed model, where the top patching heads must matter more than random ones."""

import copy
import functools

import pandas as pd
import pytest
import torch

from arithinterp.analysis.localize import (
    compute_knockout,
    rank_components,
    run_with_ablation,
    select_components,
)
from arithinterp.analysis.patching import PatchSpec, sweep_patching
from arithinterp.checkpoints import load_model
from arithinterp.components import Component, hook_name
from arithinterp.components import all_components as _all
from arithinterp.core.metrics import answer_metric
from arithinterp.evaluate import evaluate
from arithinterp.models import ModelSpec, build_model, facts
from arithinterp.tasks import make_dataset, make_digit_pairs, make_splits
from arithinterp.weights import native_weights
from tests.conftest import BAD_CONFIG, with_random_biases

COLUMNS = ["condition", "components", "n_components", "method", "exact_match"]


@functools.cache
def biased_model(attn_only: bool = False):
    """A tiny random model whose biases (b_O included) are far from zero."""
    spec = ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64, attn_only=attn_only, seed=5)
    from arithinterp.tasks import TaskSpec

    task = TaskSpec(digits_a=2, digits_b=2, format="reversed")
    return with_random_biases(build_model(spec, task), 0.3)


@pytest.fixture(scope="module")
def tiny_data(tiny_task):
    _, test = make_splits(tiny_task, 0, 32, seed=3)
    return test


@pytest.fixture(scope="module")
def shipped():
    return load_model("add3-reversed")


def all_components(model, kind):
    return [c.name for c in _all(facts(model), kind)]


def names(components):
    return [c.name for c in components]


# ---- ranking and selection ----------------------------------------------------------------
def hand_table():
    # by-position rows; the signed value at the position of largest |value| is the effect
    rows = [("L0H1", 0, 0.1), ("L0H1", 1, -0.7), ("L0H1", 2, 0.2),
            ("L1H0", 0, 0.5), ("L1H0", 1, 0.0), ("L1H0", 2, 0.4),
            ("L0.mlp", 0, 0.05), ("L0.mlp", 1, 0.9), ("L0.mlp", 2, 0.05),
            ("L1.attn", 0, 0.0), ("L1.attn", 1, 0.1), ("L1.attn", 2, -0.5)]
    return pd.DataFrame(rows, columns=["component", "pos", "normalized"])


def test_rank_components_takes_max_abs_over_positions_and_sorts():
    ranked = rank_components(hand_table())
    assert list(ranked.columns) == ["component", "kind", "layer", "head", "pos", "effect",
                                    "abs_effect", "rank"]
    # L1.attn and L1H0 tie at 0.5: forward order breaks the tie (attention layer first)
    assert ranked["component"].tolist() == ["L0.mlp", "L0H1", "L1.attn", "L1H0"]
    assert ranked["effect"].tolist() == [0.9, -0.7, -0.5, 0.5]
    assert ranked["abs_effect"].tolist() == [0.9, 0.7, 0.5, 0.5]
    assert ranked["pos"].tolist() == [1, 1, 2, 0]
    assert ranked["kind"].tolist() == ["mlp", "head", "attn", "head"]
    assert ranked["layer"].tolist() == [0, 0, 1, 1]
    assert ranked["head"].tolist()[1] == 1 and pd.isna(ranked["head"].tolist()[0])
    assert ranked["rank"].tolist() == [1, 2, 3, 4]


def test_rank_components_on_other_values_and_bad_tables():
    table = hand_table().assign(value=lambda t: -2 * t["normalized"])
    assert rank_components(table, value="value")["effect"].tolist() == [-1.8, 1.4, 1.0, -1.0]
    with pytest.raises(ValueError, match="'missing'"):
        rank_components(table, value="missing")
    resid = rank_components(pd.DataFrame({"component": ["L0.resid", "L1.resid"],
                                          "normalized": [0.2, 1.0]}))
    assert resid["component"].tolist() == ["L1.resid", "L0.resid"]
    assert resid["kind"].tolist() == ["resid", "resid"]
    with pytest.raises(ValueError, match="'L0.residue'"):
        rank_components(pd.DataFrame({"component": ["L0.residue"], "normalized": [1.0]}))


def test_ranking_a_residual_stream_grid_works(tiny_model, tiny_task):
    pairs = make_digit_pairs(tiny_task, 16, operand="a", digit=0, seed=0)
    result = sweep_patching(tiny_model, pairs, PatchSpec("resid_pre"), answer_metric(pairs, 0))
    ranked = rank_components(result.to_frame())
    assert sorted(ranked["component"]) == ["L0.resid", "L1.resid"]
    norm = result.normalized()
    assert ranked["abs_effect"].max() == pytest.approx(float(norm.abs().max()), abs=1e-6)


def test_select_components_top_k_or_threshold():
    ranked = rank_components(hand_table())
    assert names(select_components(ranked, top_k=2)) == ["L0.mlp", "L0H1"]
    assert names(select_components(ranked, top_k=10)) == ranked["component"].tolist()
    assert names(select_components(ranked, threshold=0.5)) == ["L0.mlp", "L0H1", "L1.attn",
                                                                "L1H0"]
    assert names(select_components(ranked, threshold=0.6)) == ["L0.mlp", "L0H1"]
    assert select_components(ranked, threshold=1.0) == []
    for kwargs in ({}, {"top_k": 2, "threshold": 0.5}):
        with pytest.raises(ValueError, match="exactly one of top_k and threshold"):
            select_components(ranked, **kwargs)
    with pytest.raises(ValueError, match="top_k"):
        select_components(ranked, top_k=0)


def test_ranking_a_patching_grid_matches_its_tensor(tiny_model, tiny_task):
    pairs = make_digit_pairs(tiny_task, 16, operand="a", digit=0, seed=0)
    result = sweep_patching(tiny_model, pairs, PatchSpec("z"), answer_metric(pairs, 0))
    ranked = rank_components(result.to_frame()).set_index("component")
    norm = result.normalized()  # [layer head pos]
    best = norm.abs().amax(-1)
    for layer in range(2):
        for head in range(4):
            row = ranked.loc[f"L{layer}H{head}"]
            assert row["abs_effect"] == pytest.approx(float(best[layer, head]), abs=1e-6)
            assert row["effect"] == pytest.approx(float(norm[layer, head, row["pos"]]), abs=1e-6)


# ---- knockout invariants ------------------------------------------------------------------
def _set_hook(act, hook, *, value):
    return value.to(act.dtype).expand_as(act).clone()


@pytest.mark.parametrize("attn_only", [False, True])
def test_zero_ablating_all_heads_leaves_only_the_output_bias(attn_only, tiny_data):
    model = biased_model(attn_only)
    heads = all_components(model, "head")
    ablated = run_with_ablation(model, tiny_data, heads, method="zero")
    b_O = native_weights(model).b_O  # [layer d_model]
    hooks = [(hook_name("attn_out", L), functools.partial(_set_hook, value=b_O[L]))
             for L in range(b_O.shape[0])]
    with torch.inference_mode():
        expected = model.run_with_hooks(tiny_data.tokens, fwd_hooks=hooks)
        plain = model(tiny_data.tokens)
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=0)
    assert (ablated - plain).abs().max() > 1e-2  # the heads did matter
    # the same with whole attention layers replaced by zeros is different: b_O is gone too
    no_attn = run_with_ablation(model, tiny_data, ["L0.attn", "L1.attn"], method="zero")
    assert (no_attn - expected).abs().max() > 1e-3


def test_mean_ablating_a_constant_head_changes_nothing(tiny_data):
    model = copy.deepcopy(biased_model())
    with torch.no_grad():  # W_V = 0: z = b_V at every position of every prompt
        model.blocks[1].attn.v.weight[2 * 8 : 3 * 8] = 0.0
    with torch.inference_mode():
        plain = model(tiny_data.tokens)
    ablated = run_with_ablation(model, tiny_data, ["L1H2"], method="mean")
    torch.testing.assert_close(ablated, plain, atol=1e-5, rtol=0)
    other = run_with_ablation(model, tiny_data, ["L1H1"], method="mean")
    assert (other - plain).abs().max() > 1e-3
    frame = compute_knockout(model, tiny_data, ["L1H2"], method="mean", n_random=2)
    selected = frame.set_index("condition").loc["selected"]
    assert selected["metric_drop"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("method", ["mean", "resample"])
def test_ablating_everything_on_identical_prompts_changes_nothing(method, tiny_task):
    model = biased_model()
    data = make_dataset(tiny_task, torch.full((8,), 47), torch.full((8,), 85))
    everything = sum((all_components(model, k) for k in ("head", "mlp", "attn")), [])
    with torch.inference_mode():
        plain = model(data.tokens)
    torch.testing.assert_close(run_with_ablation(model, data, everything, method=method), plain,
                               atol=1e-5, rtol=0)


def test_batched_conditions_equal_one_run_each(tiny_data):
    model = biased_model()
    frame = compute_knockout(model, tiny_data, ["L0H1", "L1.mlp"], method="resample",
                             n_random=3, seed=4).set_index("condition")
    spec = tiny_data.spec
    positions = torch.tensor(spec.answer_positions())
    for cond, row in frame.iterrows():
        names = row["components"].split(",") if row["components"] else []
        logits = run_with_ablation(model, tiny_data, names, method="resample", seed=4)
        at = logits[:, positions - 1]
        target = tiny_data.tokens[:, positions]
        ok = at.argmax(-1) == target
        assert row["exact_match"] == pytest.approx(float(ok.all(-1).double().mean())), cond
        for k in range(len(positions)):
            assert row[f"acc_c{k}"] == pytest.approx(float(ok[:, k].double().mean())), cond
        correct = at.gather(-1, target[..., None])[..., 0]
        other = at.scatter(-1, target[..., None], float("-inf")).amax(-1)
        assert row["metric"] == pytest.approx(float((correct - other).mean()), abs=1e-5), cond
    assert frame.loc["none", "metric_drop"] == 0.0
    kinds = [Component.parse(c).kind for c in frame.loc["random_0", "components"].split(",")]
    assert sorted(kinds) == ["head", "mlp"]


def test_resample_is_seeded(tiny_data):
    model = biased_model()
    run = functools.partial(compute_knockout, model, tiny_data, ["L0H0", "L1H3"],
                            method="resample", n_random=3)
    first, again, other = run(seed=7), run(seed=7), run(seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    assert list(first.columns[:5]) == COLUMNS
    assert first["condition"].tolist() == ["none", "selected", "random_0", "random_1",
                                           "random_2"]
    # the random draws do not depend on the method
    mean = compute_knockout(model, tiny_data, ["L0H0", "L1H3"], method="mean", n_random=3,
                            seed=7)
    assert mean["components"].tolist() == first["components"].tolist()
    torch.testing.assert_close(
        run_with_ablation(model, tiny_data, ["L0H0"], method="resample", seed=7),
        run_with_ablation(model, tiny_data, ["L0H0"], method="resample", seed=7))


def test_random_sets_are_distinct_and_bounded_by_how_many_exist(tiny_data):
    from arithinterp.analysis.localize import draw_random_components, max_random_sets

    model = biased_model()
    chosen = ["L0H0", "L0H1", "L1.mlp"]  # 6 other heads choose 2, 1 other MLP: 15 sets
    assert max_random_sets(model, chosen) == 15
    draws = draw_random_components(model, chosen, 15, torch.Generator().manual_seed(0))
    assert len({frozenset(d) for d in draws}) == 15
    assert all(sorted(Component.parse(c).kind for c in d) == ["head", "head", "mlp"]
               and not {c.name for c in d} & set(chosen) for d in draws)
    with pytest.raises(ValueError, match="only 15 distinct random sets"):
        draw_random_components(model, chosen, 16, torch.Generator().manual_seed(0))
    frame = compute_knockout(model, tiny_data, chosen, n_random=15, seed=1)
    randoms = frame[frame["condition"].str.startswith("random_")]["components"]
    assert randoms.nunique() == 15


def test_knockout_refuses_bad_inputs(tiny_data, tiny_task):
    model = biased_model()
    with pytest.raises(BAD_CONFIG, match="method"):
        compute_knockout(model, tiny_data, ["L0H0"], method="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        compute_knockout(model, tiny_data, [])
    with pytest.raises(ValueError, match="'L2H0'"):
        compute_knockout(model, tiny_data, ["L2H0"])
    with pytest.raises(ValueError, match="'L0.mlp'"):
        compute_knockout(biased_model(attn_only=True), tiny_data, ["L0.mlp"])
    with pytest.raises(ValueError, match="duplicates"):
        compute_knockout(model, tiny_data, ["L0H0", "L0H0"])
    with pytest.raises(ValueError, match="n_random=0"):
        compute_knockout(model, tiny_data, all_components(model, "head"), n_random=1)
    with pytest.raises(ValueError, match="fewer"):
        compute_knockout(model, tiny_data, ["L0H0"], method="resample",
                         reference=tiny_data[:4])


def test_teacher_forced_exact_match_equals_greedy_under_ablation(shipped):
    model, spec = shipped.model, shipped.task
    _, data = make_splits(spec, 0, 64, seed=2)
    heads = ["L0H3", "L1H2"]
    frame = compute_knockout(model, data, heads, method="zero", n_random=0).set_index(
        "condition")
    result = evaluate(model, data)
    assert frame.loc["none", "exact_match"] == result.exact_match

    def zero_head(z, hook, *, head):
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    hooks = [(hook_name("z", Component.parse(h).layer),
              functools.partial(zero_head, head=Component.parse(h).head)) for h in heads]
    with model.hooks(fwd_hooks=hooks):
        ablated = evaluate(model, data)
    assert 0.0 < ablated.exact_match < 1.0  # a non-trivial check
    assert frame.loc["selected", "exact_match"] == ablated.exact_match
    # per digit, only the first answer digit sees the same prefix in both (later greedy
    # digits follow the model's own earlier mistakes)
    assert frame.loc["selected", "acc_c0"] == ablated.digit_accuracy[0]


# ---- the shipped model: localized heads matter more than random ones ----------------------
@pytest.mark.parametrize("method", ["mean", "resample"])
def test_top_patching_heads_hurt_more_than_random_heads(method, shipped):
    model, spec = shipped.model, shipped.task
    pairs = make_digit_pairs(spec, 64, operand="a", digit=1, seed=0)
    result = sweep_patching(model, pairs, PatchSpec("z", by_pos=False), answer_metric(pairs, 1))
    top = select_components(rank_components(result.to_frame()), top_k=3)
    assert len(top) == 3 and all(Component.parse(c).kind == "head" for c in top)
    _, data = make_splits(spec, 0, 64, seed=1)
    frame = compute_knockout(model, data, top, method=method, n_random=5, seed=0)
    cond = frame.set_index("condition")
    random = frame[frame["condition"].str.startswith("random_")]
    assert len(random) == 5 and (random["n_components"] == 3).all()
    assert cond.loc["none", "exact_match"] > 0.95
    assert cond.loc["selected", "exact_match"] < random["exact_match"].mean()
    assert cond.loc["selected", "metric_drop"] > random["metric_drop"].mean()
