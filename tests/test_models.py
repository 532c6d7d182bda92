"""Model building: specs, determinism, devices, the facts and readout of a model."""

import pytest
import torch

from arithinterp.models import ModelSpec, build_model, resolve_device
from tests.conftest import BAD_CONFIG


def test_same_seed_gives_identical_weights(tiny_spec, tiny_task):
    a = build_model(tiny_spec, tiny_task).state_dict()
    b = build_model(tiny_spec, tiny_task).state_dict()
    c = build_model(ModelSpec(**{**tiny_spec.__dict__, "seed": 1}), tiny_task).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_build_does_not_touch_global_rng(tiny_spec, tiny_task):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(tiny_spec, tiny_task)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kwargs, field", [
    ({"n_layers": 0}, "n_layers"), ({"d_model": 30, "n_heads": 4}, "divisible"),
    ({"act_fn": "tanh"}, "act_fn"), ({"normalization": "BN"}, "normalization"),
    ({"positional": "alibi"}, "positional"), ({"d_mlp": -1}, "d_mlp"),
])
def test_bad_model_specs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        ModelSpec(**kwargs)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("toaster")


def test_facts_and_readout_describe_the_model(tiny_model, tiny_spec, tiny_task):
    from arithinterp.models import facts, readout, run_readout

    f = facts(tiny_model)
    assert (f.family, f.n_layers, f.n_heads, f.n_kv_heads, f.d_model, f.d_head, f.d_mlp) == \
        ("native", 2, 4, 4, 32, 8, 64)
    assert (f.d_vocab, f.n_ctx, f.normalization, f.positional) == \
        (tiny_task.vocab.size, tiny_task.seq_len, "LN", "standard")
    tokens = torch.randint(0, 20, (2, tiny_task.seq_len))
    _, cache = tiny_model.run_with_cache(tokens)
    torch.testing.assert_close(run_readout(tiny_model, cache["blocks.1.hook_resid_post"]),
                               tiny_model(tokens), atol=1e-5, rtol=0)
    out = readout(tiny_model)
    assert out.norm == "LN" and out.W_U.shape == (32, tiny_task.vocab.size)
