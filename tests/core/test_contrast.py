"""A contrast resolves base and donor by direction, refuses what does not fit, and gives the
same baselines through both engines."""

import functools

import pytest
import torch

from arithinterp.core.contrast import Contrast, engine_weights
from arithinterp.core.metrics import answer_metric
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import PromptPairs, TaskSpec, make_digit_pairs

TASK = TaskSpec(digits_a=2, digits_b=2, format="reversed")


@functools.cache
def case():
    model = build_model(ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64, seed=7),
                        TASK).eval()
    pairs = make_digit_pairs(TASK, 6, operand="b", digit=1, seed=2)
    return model, pairs, answer_metric(pairs, 1)


def test_direction_decides_base_and_donor():
    model, pairs, metric = case()
    base, donor = Contrast(pairs, metric, "denoise").tokens(model)
    assert torch.equal(base, pairs.corrupt.tokens) and torch.equal(donor, pairs.clean.tokens)
    noise = Contrast(pairs, metric, "noise")
    base, donor = noise.tokens(model)
    assert torch.equal(base, pairs.clean.tokens) and torch.equal(donor, pairs.corrupt.tokens)
    assert noise.clean_and_corrupted(*noise.base_and_donor("c", "x")) == ("c", "x")


def test_both_engines_give_the_same_baselines():
    model, pairs, metric = case()
    for direction in ("denoise", "noise"):
        contrast = Contrast(pairs, metric, direction)
        clean, corrupted = contrast.baselines(model)
        base, donor, fast_clean, fast_corrupted = contrast.traces(
            engine_weights(model, "fast"), torch.device("cpu"))
        torch.testing.assert_close(fast_clean, clean, atol=1e-5, rtol=0)
        torch.testing.assert_close(fast_corrupted, corrupted, atol=1e-5, rtol=0)
        assert (base.logits.shape[0], donor.logits.shape[0]) == (len(pairs), len(pairs))
        assert not torch.equal(clean, corrupted)


def test_what_does_not_fit_is_refused_by_name():
    model, pairs, metric = case()
    with pytest.raises(ValueError, match="direction must be"):
        Contrast(pairs, metric, "sideways").check(model)
    short = make_digit_pairs(TaskSpec(digits_a=1, digits_b=1, format="reversed"), 6,
                             operand="b", digit=0, seed=2)
    with pytest.raises(ValueError, match="same shape"):
        Contrast(PromptPairs(pairs.clean, short.corrupt, "b"), metric).check(model)
    assert engine_weights(model, "hooks") is None
    with pytest.raises(ValueError, match="engine must be one of"):
        engine_weights(model, "warp")
    rotary = build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2, positional="rotary"), TASK)
    assert engine_weights(rotary, "auto") is None
    with pytest.raises(ValueError, match="fast engine covers"):
        engine_weights(rotary, "fast")
