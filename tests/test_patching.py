"""Exact patching: equal to TransformerLens's patching functions, and the invariants."""

import functools

import pytest
import torch

from arithinterp.analysis.metrics import answer_metric
from arithinterp.analysis.patching import (
    HEAD_SITES,
    Cell,
    PatchSpec,
    reference_patching,
    run_with_patches,
    sweep_patching,
)
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import PromptPairs, TaskSpec, make_digit_pairs

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
    m = build_model(SHAPES[shape], TASK).eval()
    with torch.no_grad():  # random models: make the biases matter too
        for name, p in m.named_parameters():
            if "bias" in name:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return m


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


def test_reference_engine_keeps_per_prompt_values(pairs):
    model = random_model("2L-LN")
    metric = answer_metric(pairs, 1)
    fast = sweep_patching(model, pairs, PatchSpec("z"), metric, engine="fast")
    ref = sweep_patching(model, pairs, PatchSpec("z"), metric, engine="reference")
    assert ref.values.shape == fast.values.shape == (2, 4, TASK.seq_len, len(pairs))
    torch.testing.assert_close(fast.values, ref.values, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.clean, ref.clean, atol=1e-5, rtol=0)


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


def test_bad_requests():
    with pytest.raises(ValueError, match="by position"):
        PatchSpec("resid_pre", by_pos=False)
    with pytest.raises((ValueError, TypeError), match="site"):
        PatchSpec("embed")
