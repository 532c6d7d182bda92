"""The fast engine's weight adapter: TransformerLens's shapes, and which models it covers."""

from arithinterp.models import ModelSpec, build_model, facts
from arithinterp.tasks import TaskSpec
from arithinterp.weights import fast_engine_gap, native_weights

TASK = TaskSpec(digits_a=2, digits_b=2)


def test_native_weights_refuse_models_the_engine_does_not_cover():
    rotary = build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2, positional="rotary"), TASK)
    assert native_weights(rotary) is None
    assert fast_engine_gap(rotary) == "rotary positions in a model built here"


def test_native_weights_have_transformer_lens_shapes():
    model = build_model(ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=48), TASK)
    f = facts(model)
    assert fast_engine_gap(model) is None
    w = native_weights(model)
    assert w.W_Q.shape == w.W_K.shape == w.W_V.shape == (2, 4, 32, 8)
    assert w.W_O.shape == (2, 4, 8, 32) and w.group == 1
    assert w.W_in.shape == (2, 32, 48) and w.W_out.shape == (2, 48, 32) and w.W_gate is None
    assert w.W_E.shape == (f.d_vocab, 32) and w.W_U.shape == (32, f.d_vocab)
    assert w.W_pos.shape == (f.n_ctx, 32) and w.rotary is None
    assert len(w.ln1) == len(w.ln2) == 2 and w.normalization == "LN"
