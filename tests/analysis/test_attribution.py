"""DLA and logit lens: exact invariants on tiny models (LN, RMS, none, attn-only) and add3."""

from functools import partial

import pytest
import torch

from arithinterp.analysis.attribution import (
    compute_dla,
    compute_dla_per_prompt,
    compute_logit_lens,
)
from arithinterp.checkpoints import load_model
from arithinterp.components import hook_name
from arithinterp.core.metrics import AnswerMetric, answer_metric
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import make_digit_pairs, make_splits

VARIANTS = {
    "LN": {}, "RMS": {"normalization": "RMS"}, "none": {"normalization": None},
    "attn_only": {"attn_only": True}, "rotary": {"positional": "rotary"},
}
ATOL = 1e-4


def _jitter(model, seed):
    """Random biases and norm weights, so the bias rows and the norm weight matter."""
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(".bias") or key.startswith("ln_final") or ".ln" in key:
            state[key] = value + 0.3 * torch.randn(value.shape, generator=gen)
    model.load_state_dict(state)
    return model


@pytest.fixture(scope="module")
def models(tiny_task):
    base = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 64, "seed": 1}
    return {name: _jitter(build_model(ModelSpec(**{**base, **kw}), tiny_task).eval(), i)
            for i, (name, kw) in enumerate(VARIANTS.items())}


@pytest.fixture(scope="module")
def pairs(tiny_task):
    return make_digit_pairs(tiny_task, 24, operand="a", digit=1, seed=3)


@pytest.fixture(scope="module")
def add3():
    return load_model("add3-reversed")


def _logit_diff(model, tokens, metric):
    with torch.inference_mode():
        return metric(model(tokens))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dla_rows_sum_to_the_logit_diff(models, pairs, variant):
    model, metric = models[variant], answer_metric(pairs, 1)
    values, labels = compute_dla_per_prompt(model, pairs.clean, metric, batch_size=10)
    expected = _logit_diff(model, pairs.clean.tokens, metric)
    torch.testing.assert_close(values.sum(1), expected, atol=ATOL, rtol=0)
    df = compute_dla(model, pairs.clean, metric, batch_size=7)
    assert list(df["component"]) == labels
    assert df["value"].sum() == pytest.approx(float(expected.mean()), abs=ATOL)
    assert ("ln_final.b" in labels) == (variant not in ("RMS", "none"))
    assert ("L1.mlp" in labels) == (variant != "attn_only")
    assert ("pos_embed" in labels) == (variant != "rotary")
    assert df.loc[df["kind"] == "head", "head"].tolist() == [0, 1, 2, 3] * 2
    assert df.loc[df["component"] == "embed", "layer"].isna().all()


def _set_to(act, hook, *, value):
    return value


def _subtract_at(act, hook, *, pos, vec):
    act = act.clone()
    act[:, pos] -= vec
    return act


@pytest.mark.filterwarnings("ignore:A forward hook edited hook_scale")
@pytest.mark.parametrize("variant", ["LN", "RMS", "none"])
def test_dla_equals_removing_the_direct_path_with_frozen_scale(models, pairs, variant):
    """Subtracting a component from the final residual, final-norm scale frozen, is linear."""
    model, metric = models[variant], answer_metric(pairs, 1)
    tokens, pos, last = pairs.clean.tokens, metric.pos, model.cfg.n_layers - 1
    values, labels = compute_dla_per_prompt(model, pairs.clean, metric)
    names = {hook_name("z", 0), hook_name("z", 1), hook_name("mlp_out", 0), hook_name("scale")}
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        outputs = {f"L{L}H{h}": cache[hook_name("z", L)][:, pos, h] @ model.W_O[L, h]
                   for L, h in [(0, 1), (1, 2)]}
        outputs["L0.mlp"] = cache[hook_name("mlp_out", 0)][:, pos]
        frozen = [(hook_name("scale"), partial(_set_to, value=cache[hook_name("scale")]))] \
            if variant != "none" else []
        for label, vec in outputs.items():
            removed = model.run_with_hooks(tokens, fwd_hooks=frozen + [
                (hook_name("resid_post", last), partial(_subtract_at, pos=pos, vec=vec))])
            delta = metric(logits) - metric(removed)
            torch.testing.assert_close(values[:, labels.index(label)], delta, atol=ATOL, rtol=0)


def test_dla_refuses_other_metrics_and_misaligned_prompts(models, pairs):
    metric = answer_metric(pairs, 1)
    with pytest.raises(ValueError, match="logit difference"):
        compute_dla(models["LN"], pairs.clean, answer_metric(pairs, 1, kind="prob"))
    short = AnswerMetric(metric.pos, metric.correct[:5], metric.wrong[:5])
    with pytest.raises(ValueError, match="prompts"):
        compute_dla(models["LN"], pairs.clean, short)


def _teacher_forced_accuracy(model, data):
    targets = data.spec.answer_positions()
    with torch.inference_mode():
        logits = model(data.tokens)
    pred = logits[:, [p - 1 for p in targets]].argmax(-1)
    return (pred == data.tokens[:, targets]).double().mean(0)


@pytest.mark.parametrize("variant", ["LN", "RMS", "none"])
def test_logit_lens_last_layer_is_the_models_accuracy(models, tiny_task, variant):
    _, data = make_splits(tiny_task, 0, 40, seed=1)
    df = compute_logit_lens(models[variant], data, batch_size=16)
    assert df["stage"].unique().tolist() == ["embed", "L0", "L1"]
    assert df["pos"].tolist() == [p - 1 for p in tiny_task.answer_positions()] * 3
    assert df["target"].tolist() == ["c0", "c1", "c2"] * 3
    assert df["token"].tolist()[:2] == ["=", "c0"]
    last = df[df["stage"] == "L1"]["accuracy"].to_numpy()
    expected = _teacher_forced_accuracy(models[variant], data).numpy()
    assert last == pytest.approx(expected, abs=1e-12)
    assert df["mean_prob"].between(0, 1).all() and (df["mean_rank"] >= 0).all()


def test_add3_logit_lens_and_dla(add3):
    model, task = add3.model, add3.task
    _, data = make_splits(task, 0, 64, seed=0)
    lens = compute_logit_lens(model, data)
    last = lens[lens["stage"] == f"L{model.cfg.n_layers - 1}"]
    assert last["accuracy"].to_numpy() == pytest.approx(
        _teacher_forced_accuracy(model, data).numpy(), abs=1e-12)
    assert (last["accuracy"] > 0.95).all()
    pairs = make_digit_pairs(task, 64, operand="a", digit=1)
    metric = answer_metric(pairs, 1)
    df = compute_dla(model, pairs.clean, metric)
    expected = float(_logit_diff(model, pairs.clean.tokens, metric).mean())
    assert df["value"].sum() == pytest.approx(expected, abs=ATOL)
    assert expected > 1  # the model prefers its correct digit


@pytest.mark.parametrize("spec", [ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64),
                                  ModelSpec(n_layers=1, d_model=16, n_heads=2, attn_only=True,
                                            normalization="RMS")])
def test_digit_attribution_sums_to_each_digits_margin_over_the_mean_digit(spec, tiny_task):
    from arithinterp.analysis.attribution import compute_digit_attribution
    from arithinterp.tasks import make_splits

    model = build_model(spec, tiny_task).eval()
    data = make_splits(tiny_task, 0, 40, seed=3)[1]
    ids = tiny_task.vocab.digit_ids()
    table = compute_digit_attribution(model, data, ids, batch_size=16)
    with torch.inference_mode():
        logits = model(data.tokens)
    for k, target in enumerate(tiny_task.answer_positions()):
        at = logits[:, target - 1]
        margin = at.gather(1, data.tokens[:, target, None])[:, 0] - at[:, ids].mean(1)
        total = table[table["digit"] == k]["value"].sum()
        assert total == pytest.approx(float(margin.mean()), abs=1e-4)
    assert set(table["digit"]) == set(range(tiny_task.answer_width))
