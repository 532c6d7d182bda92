"""Exact patching: equal to TransformerLens's patching functions, and the invariants."""

import functools

import numpy as np
import pandas as pd
import pytest
import torch

from arithinterp.analysis.attribution_patching import sweep_attribution
from arithinterp.analysis.patching import (
    HEAD_SITES,
    Cell,
    PatchSpec,
    patching_difference,
    reference_patching,
    run_with_patches,
    sweep_patching,
)
from arithinterp.analysis.paths import sweep_paths
from arithinterp.checkpoints import load_model
from arithinterp.core.metrics import AnswerMetric, answer_metric
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import PromptPairs, TaskSpec, make_digit_pairs
from tests.conftest import with_random_biases

TASK = TaskSpec(digits_a=2, digits_b=2, format="reversed")
SHAPES = {
    "1L-attn-only-noLN": ModelSpec(n_layers=1, d_model=16, n_heads=2, attn_only=True,
                                   normalization=None, seed=1),
    "2L-LN": ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64, seed=2),
    "3L-RMS-relu": ModelSpec(n_layers=3, d_model=24, n_heads=3, d_mlp=32, normalization="RMS",
                             act_fn="relu", seed=3),
}
GRIDS = [PatchSpec(s) for s in ("resid_pre", "resid_mid", "attn_out", "mlp_out")] + [
    PatchSpec(s, by_pos) for s in HEAD_SITES for by_pos in (True, False)]


@pytest.fixture(scope="module")
def pairs():
    return make_digit_pairs(TASK, 12, operand="a", digit=0, seed=0)


@functools.cache
def random_model(shape: str):
    return with_random_biases(build_model(SHAPES[shape], TASK))


# TransformerLens has no resid_mid or MLP hooks in attention-only models: nothing to compare
CASES = [(shape, spec) for shape in SHAPES for spec in GRIDS
         if not (SHAPES[shape].attn_only and spec.site in ("mlp_out", "resid_mid"))]


@pytest.mark.parametrize("shape, spec", CASES,
                         ids=[f"{sh}-{sp.site}-{'pos' if sp.by_pos else 'all'}"
                              for sh, sp in CASES])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_fast_engine_equals_transformer_lens(shape, spec, direction, pairs):
    model = random_model(shape)
    metric = answer_metric(pairs, 0)
    result = sweep_patching(model, pairs, spec, metric, direction=direction, engine="fast")
    base, donor = ((pairs.corrupt.tokens, pairs.clean.tokens) if direction == "denoise"
                   else (pairs.clean.tokens, pairs.corrupt.tokens))
    expected = reference_patching(model, base, donor, spec, metric)
    assert result.mean().shape == expected.shape
    torch.testing.assert_close(result.mean(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", GRIDS + [PatchSpec("resid_post")],
                         ids=[f"{s.site}-{'pos' if s.by_pos else 'all'}"
                              for s in GRIDS + [PatchSpec("resid_post")]])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_hook_engine_equals_the_fast_engine_per_prompt(spec, direction, pairs):
    model = random_model("2L-LN")
    metric = answer_metric(pairs, 1)
    fast = sweep_patching(model, pairs, spec, metric, engine="fast", direction=direction)
    hooks = sweep_patching(model, pairs, spec, metric, engine="hooks", direction=direction)
    assert hooks.values.shape == fast.values.shape
    torch.testing.assert_close(fast.values, hooks.values, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.clean, hooks.clean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_resid_mid_patches_the_true_residual_stream(shape, pairs):
    """In the last layer, patching the whole residual stream after attention at the metric
    position leaves only that position's MLP and the unembedding: the donor's metric."""
    model = random_model(shape)
    metric = answer_metric(pairs, 0)
    last = SHAPES[shape].n_layers - 1
    donor_score = metric(model(pairs.clean.tokens))
    cell = Cell("resid_mid", last, pos=metric.pos)
    patched = metric(run_with_patches(model, pairs.corrupt.tokens, pairs.clean.tokens, [cell]))
    torch.testing.assert_close(patched, donor_score, atol=1e-5, rtol=0)
    for engine in ("fast", "hooks"):
        grid = sweep_patching(model, pairs, PatchSpec("resid_mid"), metric, engine=engine)
        torch.testing.assert_close(grid.values[last, metric.pos], donor_score, atol=1e-5, rtol=0)


def test_resid_post_equals_next_layers_resid_pre(pairs):
    model = random_model("3L-RMS-relu")
    metric = answer_metric(pairs, 0)
    post = sweep_patching(model, pairs, PatchSpec("resid_post"), metric).mean()
    pre = sweep_patching(model, pairs, PatchSpec("resid_pre"), metric).mean()
    torch.testing.assert_close(post[:-1], pre[1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(post[-1, metric.pos], metric.score(
        model(pairs.clean.tokens)[:, metric.pos]).mean(), atol=1e-5, rtol=0)


def test_invariants(pairs):
    model = random_model("2L-LN")
    metric = answer_metric(pairs, 0)
    clean = metric(model(pairs.clean.tokens)).mean()
    corrupted = metric(model(pairs.corrupt.tokens)).mean()
    every_pos = [Cell("resid_pre", 0, pos=p) for p in range(TASK.seq_len)]
    patched = metric(run_with_patches(model, pairs.corrupt.tokens, pairs.clean.tokens, every_pos))
    normalized = (patched.mean() - corrupted) / (clean - corrupted)
    assert normalized.item() == pytest.approx(1.0, abs=1e-6)
    nothing = metric(run_with_patches(model, pairs.corrupt.tokens, pairs.clean.tokens, []))
    assert nothing.mean().item() == pytest.approx(corrupted.item(), abs=1e-6)

    result = sweep_patching(model, pairs, PatchSpec("resid_pre"), metric)
    norm = result.normalized()
    # positions after the metric's position cannot matter; the metric position at layer 0
    # carries everything the clean tokens up to it carry only when it is the sole difference
    assert torch.all(norm[:, metric.pos + 1 :] == 0)
    diff_pos = int((pairs.clean.tokens != pairs.corrupt.tokens)[0].nonzero()[0])
    assert norm[0, :diff_pos].abs().max() < 1e-5  # identical prefixes: no effect

    same = PromptPairs(pairs.clean, pairs.clean, "none")
    for spec in (PatchSpec("resid_pre"), PatchSpec("z"), PatchSpec("pattern", by_pos=False)):
        clean_to_clean = sweep_patching(model, same, spec, metric)
        torch.testing.assert_close(clean_to_clean.mean(),
                                   torch.full_like(clean_to_clean.mean(), clean.item()),
                                   atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="does not move the metric"):
            clean_to_clean.normalized()


def test_tidy_frame_has_named_axes(pairs):
    model = random_model("2L-LN")
    result = sweep_patching(model, pairs, PatchSpec("z"), answer_metric(pairs, 0))
    df = result.to_frame()
    assert len(df) == 2 * 4 * TASK.seq_len
    assert {"layer", "head", "pos", "token", "component", "value", "normalized"} <= set(df.columns)
    row = df[(df["layer"] == 1) & (df["head"] == 3) & (df["pos"] == 2)].iloc[0]
    assert row.component == "L1H3" and row.token == TASK.position_labels()[2]
    assert row.value == pytest.approx(float(result.mean()[1, 3, 2]))


def test_noising_effects_rank_the_shipped_heads_as_denoising_does():
    """On add3-reversed, noising read as an effect (1 - restored) names the same strongest
    head as denoising; read as the raw normalized value it would pick the least needed."""
    loaded = load_model("add3-reversed")
    shipped = make_digit_pairs(loaded.task, 64, operand="a", digit=1, seed=0)
    metric = answer_metric(shipped, 1)
    frames = {d: sweep_patching(loaded.model, shipped, PatchSpec("z", False), metric,
                                direction=d).to_frame() for d in ("denoise", "noise")}
    noise = frames["noise"]
    assert noise["effect"].tolist() == pytest.approx((1 - noise["normalized"]).tolist())
    strongest = {d: f.loc[f["effect"].idxmax(), "component"] for d, f in frames.items()}
    assert strongest["noise"] == strongest["denoise"]
    assert noise.loc[noise["normalized"].idxmax(), "component"] != strongest["denoise"]


def test_two_models_compare_cell_by_cell(pairs):
    metric = answer_metric(pairs, 0)
    frames = [pd.concat([sweep_patching(random_model(shape), pairs, spec, metric).to_frame()
                         for spec in (PatchSpec("resid_pre"), PatchSpec("z", False))])
              for shape in ("2L-LN", "3L-RMS-relu")]
    both = patching_difference(*frames)
    # the cells both models have: 2 layers x positions (resid_pre) + 2 layers x 3 heads (z)
    assert len(both) == 2 * TASK.seq_len + 2 * 3
    a = frames[0].set_index(["site", "layer", "head", "pos"])
    row = both[(both["site"] == "z") & (both["layer"] == 1) & (both["head"] == 2)].iloc[0]
    assert row["effect_a"] == a.loc[("z", 1, 2.0, np.nan), "effect"].item()
    assert row["difference"] == pytest.approx(row["effect_a"] - row["effect_b"])
    assert patching_difference(frames[0], frames[0])["difference"].abs().max() == 0
    with pytest.raises(ValueError, match="share no patching cell"):
        patching_difference(frames[0][frames[0]["site"] == "z"],
                            frames[1][frames[1]["site"] == "resid_pre"])
    with pytest.raises(ValueError, match="lacks column"):
        patching_difference(frames[0].drop(columns="effect"), frames[1])


def test_bad_requests(pairs):
    with pytest.raises(ValueError, match="by position"):
        PatchSpec("resid_pre", by_pos=False)
    with pytest.raises((ValueError, TypeError), match="site"):
        PatchSpec("embed")
    model = random_model("2L-LN")
    metric = answer_metric(pairs, 0)
    other = make_digit_pairs(TaskSpec(digits_a=1, digits_b=1), 12, operand="a", digit=0)
    mixed = PromptPairs(pairs.clean, other.corrupt, "a_0")
    with pytest.raises(ValueError, match=r"clean is \(12, 11\).*corrupt \(12, 8\)"):
        sweep_patching(model, mixed, PatchSpec("z"), metric)
    for bad, message in ((AnswerMetric(99, metric.correct, metric.wrong),
                          r"position must be in 0\.\.10"),
                         (AnswerMetric(metric.pos, metric.correct + 999, metric.wrong),
                          r"correct token ids must be in 0\.\.20"),
                         (AnswerMetric(metric.pos, metric.correct[:3], metric.wrong[:3]),
                          "for 12 prompts")):
        for sweep in (sweep_patching, sweep_attribution):
            with pytest.raises(ValueError, match=message):
                sweep(model, pairs, PatchSpec("z"), bad)
        with pytest.raises(ValueError, match=message):
            sweep_paths(model, pairs, bad)


class NaNMetric(AnswerMetric):
    """A metric that is NaN for prompts 2 and 5."""

    def score(self, logits_at_pos):
        out = super().score(logits_at_pos).clone()
        out[..., [2, 5]] = float("nan")
        return out


def test_non_finite_metric_values_are_refused_naming_the_prompts(pairs):
    model = random_model("2L-LN")
    m = answer_metric(pairs, 0)
    nan = NaNMetric(m.pos, m.correct, m.wrong)
    for engine in ("fast", "hooks"):
        with pytest.raises(ValueError, match=r"NaN or infinite for 2 of 12 prompts .*\[2, 5\]"):
            sweep_patching(model, pairs, PatchSpec("resid_pre"), nan, engine=engine)


# ---- Llama-family LLMs: rotary, RMSNorm, gated MLP, grouped-query attention ---------------
LLAMA_GRIDS = [PatchSpec(s) for s in ("resid_pre", "resid_mid", "resid_post", "attn_out",
                                      "mlp_out")] + [
    PatchSpec(s, by_pos) for s in ("z", "q", "pattern") for by_pos in (True, False)]


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    from arithinterp.llm import make_llm_pairs
    from arithinterp.pretrained import load_llm
    from arithinterp.tasks import PromptSuite

    loaded = load_llm(tiny_llama_dir)
    suite = PromptSuite(digits=2, n_shots=1)
    pairs = make_llm_pairs(loaded, suite, suite.problems(30), change="a", digit=1, n=6)
    metric = AnswerMetric(pos=pairs.clean.tokens.shape[1] - 1, correct=pairs.clean.target,
                          wrong=pairs.corrupt.target)
    return loaded.model, pairs, metric


@pytest.mark.parametrize("spec", LLAMA_GRIDS, ids=[f"{s.site}-{'pos' if s.by_pos else 'all'}"
                                                   for s in LLAMA_GRIDS])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_fast_engine_on_a_llama_equals_the_hook_engine_and_transformer_lens(spec, direction,
                                                                            llama):
    model, pairs, metric = llama
    fast = sweep_patching(model, pairs, spec, metric, direction=direction, engine="fast")
    hooks = sweep_patching(model, pairs, spec, metric, direction=direction, engine="hooks")
    torch.testing.assert_close(fast.values, hooks.values, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast.clean, hooks.clean, atol=1e-4, rtol=0)
    assert fast.values.std() > 1e-3  # the grid is not flat: the comparison means something
    if spec.site != "resid_post":  # TransformerLens has no resid_post grid
        base, donor = ((pairs.corrupt.tokens, pairs.clean.tokens) if direction == "denoise"
                       else (pairs.clean.tokens, pairs.corrupt.tokens))
        expected = reference_patching(model, base, donor, spec, metric)
        torch.testing.assert_close(fast.mean(), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("site", ["k", "v"])
def test_key_value_grids_are_refused_under_grouped_query_attention(site, llama):
    model, pairs, metric = llama
    with pytest.raises(ValueError, match="grouped-query attention"):
        sweep_patching(model, pairs, PatchSpec(site), metric)


@pytest.mark.parametrize("receiver, receiver_input", [("logits", None), ("L1H1", "q"),
                                                      ("L1H2", "q")])
def test_path_patching_on_a_llama_fast_equals_brute_force(receiver, receiver_input, llama):
    model, pairs, metric = llama
    fast = sweep_paths(model, pairs, metric, receiver=receiver, receiver_input=receiver_input,
                       engine="fast")
    hooks = sweep_paths(model, pairs, metric, receiver=receiver, receiver_input=receiver_input,
                        engine="hooks")
    assert list(fast["sender"]) == list(hooks["sender"])
    np.testing.assert_allclose(fast["value"], hooks["value"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("spec", [PatchSpec("resid_pre", layers=(1, 2)),
                                  PatchSpec("z", layers=(2,)),
                                  PatchSpec("pattern", by_pos=False, layers=(0, 2))],
                         ids=["resid_pre", "z-pos", "pattern-all"])
def test_a_layer_subset_is_the_full_grid_s_rows(spec, pairs):
    model = random_model("3L-RMS-relu")
    metric = answer_metric(pairs, 0)
    rows = list(spec.layers)
    full = sweep_patching(model, pairs, PatchSpec(spec.site, spec.by_pos), metric)
    for engine in ("fast", "hooks"):
        part = sweep_patching(model, pairs, spec, metric, engine=engine)
        torch.testing.assert_close(part.values, full.values[rows], atol=1e-5, rtol=0)
    expected = reference_patching(model, pairs.corrupt.tokens, pairs.clean.tokens, spec, metric)
    torch.testing.assert_close(part.mean(), expected, atol=1e-5, rtol=0)
    frame = part.to_frame()
    assert sorted(frame["layer"].unique()) == rows
    merged = frame.merge(full.to_frame(), on=["layer", "head", "pos"], suffixes=("", "_full"))
    assert len(merged) == len(frame)
    np.testing.assert_allclose(merged["value"], merged["value_full"], atol=1e-5)
    est = sweep_attribution(model, pairs, spec, metric)
    torch.testing.assert_close(est.values, sweep_attribution(
        model, pairs, PatchSpec(spec.site, spec.by_pos), metric).values[rows], atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers, match", [((), "layers must be"), ((2, 1), "layers must be"),
                                           ((1, 1), "layers must be"), ((-1,), "layers must be")])
def test_bad_layer_subsets_are_refused(layers, match):
    with pytest.raises(ValueError, match=match):
        PatchSpec("resid_pre", layers=layers)


def test_a_layer_beyond_the_model_is_refused(pairs):
    model = random_model("2L-LN")
    with pytest.raises(ValueError, match=r"layers must be in 0\.\.1"):
        sweep_patching(model, pairs, PatchSpec("z", layers=(2,)), answer_metric(pairs, 0))


def test_the_fast_engine_runs_a_llama_in_bfloat16(tiny_llama_dir):
    from arithinterp.llm import make_llm_pairs, pair_metric
    from arithinterp.pretrained import load_llm
    from arithinterp.tasks import PromptSuite

    loaded = load_llm(tiny_llama_dir)
    loaded.model.to(torch.bfloat16)
    suite = PromptSuite(digits=2, n_shots=1)
    pairs = make_llm_pairs(loaded, suite, suite.problems(30), change="a", digit=1, n=6)
    metric = pair_metric(pairs)
    for spec in (PatchSpec("z", by_pos=False), PatchSpec("resid_pre")):
        fast = sweep_patching(loaded.model, pairs, spec, metric, engine="fast")
        hooks = sweep_patching(loaded.model, pairs, spec, metric, engine="hooks")
        assert fast.values.dtype == torch.bfloat16
        # bfloat16 keeps 8 bits of mantissa: the two engines' different operation orders
        # round differently, so compare cell means loosely and every value by correlation
        a, b = fast.values.float().ravel(), hooks.values.float().ravel()
        torch.testing.assert_close(fast.mean().float(), hooks.mean().float(), atol=0.1,
                                   rtol=0.05)
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.99


def test_models_the_fast_engine_does_not_cover_say_why(pairs):
    rotary = build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2, positional="rotary"), TASK)
    with pytest.raises(ValueError, match="rotary positions in a model built here"):
        sweep_patching(rotary, pairs, PatchSpec("z"), answer_metric(pairs, 0), engine="fast")
