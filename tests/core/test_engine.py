"""The hook engine against brute force and TransformerLens's own hooks; the fast engine's
interventions against the hook engine's; gradients through interventions."""

import functools

import pytest
import torch

from arithinterp.components import hook_name
from arithinterp.core import fast as fw
from arithinterp.core.engine import (
    capture_activations,
    intervening,
    run,
    run_with_gradients,
)
from arithinterp.core.interventions import (
    Add,
    Intervention,
    Replace,
    ReplaceInSubspace,
    Zero,
    patch,
)
from arithinterp.core.metrics import answer_metric
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import TaskSpec, make_digit_pairs
from arithinterp.weights import native_weights
from tests.conftest import with_random_biases

TASK = TaskSpec(digits_a=2, digits_b=2, format="reversed")


@functools.cache
@torch.inference_mode(False)  # built for tests with and without gradients
def model():
    spec = ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64, seed=3)
    return with_random_biases(build_model(spec, TASK)).eval()


@functools.cache
@torch.inference_mode(False)
def pairs():
    return make_digit_pairs(TASK, 8, operand="a", digit=0, seed=0)


def _n_hooks(m) -> int:
    unique = {id(h): h for h in m.hook_dict.values()}  # aliases share one hook point
    return sum(len(h.fwd_hooks) for h in unique.values())


@torch.inference_mode()
def test_no_intervention_is_the_plain_forward_and_capture_is_run_with_cache():
    m, tokens = model(), pairs().clean.tokens
    names = [hook_name("z", 1), hook_name("resid_mid", 0), hook_name("mlp_post", 1)]
    got = run(m, tokens, capture=names)
    logits, cache = m.run_with_cache(tokens)
    torch.testing.assert_close(got.logits, logits, atol=0, rtol=0)
    for n in names:
        torch.testing.assert_close(got.acts[n], cache[n], atol=0, rtol=0)
    # resid_mid as resid_pre + attn_out: the same numbers, also where a model has no such hook
    mid = capture_activations(m, tokens, [hook_name("resid_mid", 0)])
    torch.testing.assert_close(mid[hook_name("resid_mid", 0)], cache[hook_name("resid_mid", 0)],
                               atol=1e-6, rtol=0)


@torch.inference_mode()
def test_interventions_equal_a_hand_written_hook_and_compose_in_order():
    m, tokens = model(), pairs().clean.tokens
    value = torch.randn(tokens.shape[0], 32, generator=torch.Generator().manual_seed(1))
    shift = torch.randn(32, generator=torch.Generator().manual_seed(2))

    def by_hand(act, hook):
        act = act.clone()
        act[:, 2] = value + shift
        act[:, 4, 1] = 0.0
        return act

    expected = m.run_with_hooks(tokens, fwd_hooks=[(hook_name("resid_pre", 1), by_hand)])
    got = run(m, tokens, [Intervention("resid_pre", Replace(value), 1, pos=2),
                          Intervention("resid_pre", Add(shift), 1, pos=2),
                          Intervention("resid_pre", Zero(), 1, pos=4, units=(1,))])
    torch.testing.assert_close(got.logits, expected, atol=0, rtol=0)
    assert _n_hooks(m) == 0


def test_hooks_are_removed_after_an_error():
    m, tokens = model(), pairs().clean.tokens
    with pytest.raises(RuntimeError), intervening(m, [Intervention("z", Zero(), 0)]):
        assert _n_hooks(m) == 1
        raise RuntimeError("inside")
    assert _n_hooks(m) == 0
    with pytest.raises(ValueError, match="no such activation"):
        run(m, tokens, capture=["blocks.9.hook_resid_post"])


@torch.inference_mode()
def test_patching_everything_from_the_donor_gives_the_donor():
    m, p = model(), pairs()
    donor = capture_activations(m, p.clean.tokens, [hook_name("resid_pre", 0)])
    got = run(m, p.corrupt.tokens, [patch("resid_pre", 0, donor)]).logits
    torch.testing.assert_close(got, m(p.clean.tokens), atol=1e-5, rtol=0)


def test_gradients_equal_those_of_an_added_zero_vector():
    m, p = model(), pairs()
    metric = answer_metric(p, 0)
    name = hook_name("resid_mid", 1)
    acts, grads, score = run_with_gradients(m, p.corrupt.tokens, [name], metric)
    delta = torch.zeros_like(acts[name], requires_grad=True)
    # the same derivative by another route: an Add intervention whose value is a leaf
    out = metric(run(m, p.corrupt.tokens, [Intervention("resid_mid", Add(delta), 1)]).logits)
    torch.testing.assert_close(score, out.detach())
    (by_add,) = torch.autograd.grad(out.sum(), [delta])
    torch.testing.assert_close(grads[name], by_add, atol=1e-6, rtol=1e-5)
    assert grads[name].abs().max() > 1e-3
    with torch.inference_mode(), pytest.raises(ValueError, match="inference_mode"):
        run_with_gradients(m, p.corrupt.tokens, [name], metric)


def test_a_subspace_basis_is_fitted_through_the_model():
    """A one-dimensional subspace of the residual stream at the operand digit, trained so that
    swapping it in from the clean run raises the clean answer's logit difference (DAS's
    objective): the loss falls, which needs gradients through the run to the basis."""
    m, p = model(), pairs()
    metric = answer_metric(p, 0)
    pos = int((p.clean.tokens != p.corrupt.tokens).any(0).nonzero()[0])  # the changed digit
    name = hook_name("resid_pre", 1)
    with torch.inference_mode():
        source = capture_activations(m, p.clean.tokens, [name])[name][:, pos].clone()
    basis = torch.nn.Parameter(torch.randn(32, 1, generator=torch.Generator().manual_seed(0)))
    opt = torch.optim.Adam([basis], lr=0.05)
    losses = []
    for _ in range(30):
        swap = Intervention("resid_pre", ReplaceInSubspace(basis, source), 1, pos=pos)
        loss = -metric(run(m, p.corrupt.tokens, [swap]).logits).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.03, losses


# ---- the fast engine's interventions equal the hook engine's ---------------------------------
def _cases(n_heads: int, rotary: bool, gqa: bool):
    g = torch.Generator().manual_seed(4)
    out = []
    for site in fw.FAST_SITES:
        if (site in ("q", "k") and rotary) or (site in ("k", "v") and gqa):
            continue
        head = 1 if site in ("q", "k", "v", "z", "pattern") else None
        out.append((site, head, g))
    return out


def _check_fast_equals_hooks(m, tokens, rotary=False, gqa=False):
    w = native_weights(m)
    trace = fw.run_trace(w, tokens)
    pos = tokens.shape[1] - 1  # what the last position's logits see at every site
    for site, head, g in _cases(m.cfg.n_heads, rotary, gqa):
        for layer in range(m.cfg.n_layers):
            act = trace.get(site, layer)
            idx = Intervention(site, Zero(), layer, head=head, pos=pos).index()
            noise = torch.randn(act[idx].shape, generator=g) * 0.5
            basis = torch.randn(act.shape[-1], 2, generator=g)
            items = [Intervention(site, Add(noise), layer, head=head, pos=pos),
                     Intervention(site, ReplaceInSubspace(basis, act[idx] * 2), layer,
                                  head=head, pos=pos)]
            with torch.inference_mode():
                hooks = run(m, tokens, items).logits[:, -1]
                fast = fw.run_intervened(w, tokens, items).logits
            torch.testing.assert_close(fast, hooks, atol=1e-4, rtol=0, msg=f"{site} L{layer}")
            assert (hooks - trace.logits).abs().max() > 1e-4, f"{site} L{layer} changed nothing"


def test_fast_engine_interventions_equal_the_hook_engine_on_a_native_model():
    _check_fast_equals_hooks(model(), pairs().clean.tokens)


def test_fast_engine_interventions_equal_the_hook_engine_on_a_llama(tiny_llama_dir):
    from arithinterp.pretrained import load_llm

    m = load_llm(tiny_llama_dir).model
    tokens = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(0))
    _check_fast_equals_hooks(m, tokens, rotary=True, gqa=True)
    w = native_weights(m)
    for site in ("q", "k", "v"):
        with pytest.raises(ValueError, match="hook engine"):
            fw.run_intervened(w, tokens, [Intervention(site, Zero(), 0)])
    with pytest.raises(ValueError, match="intervenes at"):
        fw.run_intervened(w, tokens, [Intervention("mlp_post", Zero(), 0)])
