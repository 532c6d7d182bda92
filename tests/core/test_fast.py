"""The resumable forward pass over native weights equals the bridge, operation by operation."""

import pytest
import torch

from arithinterp.components import hook_name
from arithinterp.core import fast as fw
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import TaskSpec
from arithinterp.weights import native_weights

TASK = TaskSpec(digits_a=2, digits_b=2)


@pytest.mark.parametrize("spec", [
    ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64, seed=1),
    ModelSpec(n_layers=2, d_model=24, n_heads=3, d_mlp=32, normalization="RMS", act_fn="relu"),
    ModelSpec(n_layers=1, d_model=16, n_heads=2, attn_only=True, normalization=None),
])
def test_trace_equals_the_bridge_and_an_unchanged_suffix_its_logits(spec):
    model = build_model(spec, TASK).eval()
    tokens = torch.randint(3, 20, (5, TASK.seq_len))
    w = native_weights(model)
    trace = fw.run_trace(w, tokens)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(trace.logits, logits[:, -1], atol=1e-5, rtol=0)
    for site in ("resid_pre", "z", "pattern", "attn_out", "resid_post"):
        for layer in range(spec.n_layers):
            torch.testing.assert_close(trace.get(site, layer), cache[hook_name(site, layer)],
                                       atol=1e-5, rtol=0)
    hi = TASK.seq_len - 2
    start = trace.resid_pre[0][None, :, 2:]  # no change from position 2 on
    out = fw.run_suffix(w, trace, 0, "pre", start[:, :, : hi - 1], 2, hi)
    torch.testing.assert_close(out[0], logits[:, hi], atol=1e-5, rtol=0)


def test_trace_equals_a_wrapped_llama(tiny_llama_dir):
    """Rotary positions, RMSNorm, a gated MLP and grouped-query attention (4 query heads, 2
    key/value heads), read from a Hugging Face Llama through the bridge."""
    from arithinterp.pretrained import load_pretrained

    model = load_pretrained(tiny_llama_dir).model
    w = native_weights(model)
    assert w is not None and w.group == 2 and w.W_gate is not None and w.rotary is not None
    tokens = torch.randint(0, 48, (4, 14), generator=torch.Generator().manual_seed(0))
    trace = fw.run_trace(w, tokens)
    logits, cache = model.run_with_cache(tokens)
    torch.testing.assert_close(trace.logits, logits[:, -1], atol=1e-4, rtol=0)
    for site in ("resid_pre", "z", "pattern", "attn_out", "mlp_out", "resid_post"):
        for layer in range(2):
            torch.testing.assert_close(trace.get(site, layer), cache[hook_name(site, layer)],
                                       atol=1e-4, rtol=0)
    hi = 11
    start = trace.resid_pre[1][None, :, 3:]  # resume mid-network, rotated from position 3
    out = fw.run_suffix(w, trace, 1, "pre", start[:, :, : hi - 2], 3, hi)
    torch.testing.assert_close(out[0], logits[:, hi], atol=1e-4, rtol=0)
