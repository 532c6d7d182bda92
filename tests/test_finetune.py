"""Selective fine-tuning: only the chosen slices move, bitwise; decay and Adam's state leak
nowhere; grouped-query attention and gradient rescaling behave as documented."""

import pytest
import torch

from arithinterp.components import Component
from arithinterp.finetune import (
    Schedule,
    component_masks,
    copy_model,
    count_trainable,
    finetune,
    grad_multipliers,
)
from arithinterp.models import ModelSpec, build_model, parameters_by_key
from arithinterp.pretrained import load_pretrained
from arithinterp.tasks import TaskSpec, make_splits

TASK = TaskSpec(digits_a=2, digits_b=2)


@pytest.fixture(scope="module")
def data():
    return make_splits(TASK, 256, 10, seed=0)[0]


@pytest.fixture(scope="module")
def base():
    return build_model(ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64, seed=3),
                       TASK).eval()


SCHEDULE = Schedule(max_steps=6, lr=1e-2, batch_size=32, weight_decay=0.5, warmup_steps=0)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("components", [["L1H2"], ["L0H0", "L1H3"], ["L0.mlp"],
                                        ["L1H1", "L0.mlp"], ["L1.attn"]])
def test_only_the_selected_slices_change_bitwise(base, data, components):
    model = copy_model(base)
    before = _state(model)
    result = finetune(model, data, SCHEDULE, components=components)
    masks = component_masks(model, components)
    after = _state(model)
    for key, old in before.items():
        new = after[key]
        if key in masks:
            m = masks[key]
            assert torch.equal(new[~m], old[~m]), key  # frozen entries: bitwise, decay too
            assert not torch.equal(new[m], old[m]), key
        else:
            assert torch.equal(new, old), key
    assert set(result.changed) == set(masks)
    assert result.n_params == count_trainable(model, masks) == sum(int(m.sum())
                                                                   for m in masks.values())
    # AdamW's moments of frozen entries stay exactly zero
    params = parameters_by_key(model)
    for key, m in masks.items():
        state = result.optimizer.state[params[key]]
        assert not state["exp_avg"][~m].any() and not state["exp_avg_sq"][~m].any()
    assert list(result.curve["step"]) == list(range(1, 7))
    assert all(p.requires_grad for p in model.parameters())  # restored afterwards


def test_a_head_owns_its_rows_and_columns_and_not_the_layers_output_bias(base):
    masks = component_masks(base, ["L1H2"])
    d = 8
    q = masks["blocks.1.attn.q.weight"]
    assert q[2 * d:3 * d].all() and q.sum() == d * 32
    o = masks["blocks.1.attn.o.weight"]
    assert o[:, 2 * d:3 * d].all() and o.sum() == 32 * d
    assert "blocks.1.attn.o.bias" not in masks
    with pytest.raises(ValueError, match="is not in this model"):
        component_masks(base, ["L2H0"])
    with pytest.raises(ValueError, match="no weights of its own"):
        component_masks(base, ["L0.resid"])
    with pytest.raises(ValueError, match="no components selected"):
        component_masks(base, [])


def test_full_fine_tuning_moves_everything(base, data):
    model = copy_model(base)
    result = finetune(model, data, SCHEDULE)
    assert result.n_params == sum(p.numel() for p in model.parameters())
    assert len(result.changed) >= len(list(model.parameters())) - 1


def test_grouped_query_attention_trains_the_shared_key_value_head(tiny_llama_dir):
    model = load_pretrained(tiny_llama_dir).model  # 4 query heads, 2 key/value heads
    masks = component_masks(model, ["L0H3"])
    d = 8
    assert masks["blocks.0.attn.q.weight"][3 * d:].all()
    assert masks["blocks.0.attn.q.weight"].sum() == d * 32
    k = masks["blocks.0.attn.k.weight"]  # heads 2 and 3 share key/value head 1
    assert k[d:2 * d].all() and k.sum() == d * 32
    assert torch.equal(component_masks(model, ["L0H2"])["blocks.0.attn.k.weight"], k)
    tokens = torch.randint(0, 40, (64, 12))
    data = type("Prompts", (), {"tokens": tokens, "loss_mask": torch.ones_like(tokens,
                                                                            dtype=torch.bool)})
    before = _state(model)
    finetune(model, data, Schedule(max_steps=3, batch_size=16), components=["L0H3"])
    after = _state(model)
    kw = "blocks.0.attn.k.weight"
    assert torch.equal(after[kw][:d], before[kw][:d]) and not torch.equal(after[kw][d:],
                                                                         before[kw][d:])
    assert all(torch.equal(after[k], before[k]) for k in before if "blocks.1" in k)


def test_rescaling_multiplies_head_gradients_by_heads_over_selected(base):
    plain = grad_multipliers(base, ["L1H2", "L0.mlp"])
    scaled = grad_multipliers(base, ["L1H2", "L0.mlp"], rescale=True)
    assert scaled["blocks.1.attn.q.weight"].max() == 8.0  # 8 heads, 1 selected
    assert scaled["blocks.0.mlp.in.weight"].max() == 1.0  # MLPs are not rescaled
    for key in plain:
        assert torch.equal(scaled[key] != 0, plain[key] != 0)


def test_bad_schedules():
    for kwargs in ({"max_steps": 0}, {"lr": 0.0}, {"batch_size": True}):
        with pytest.raises(ValueError):
            Schedule(**kwargs)
    assert Component.parse("L0H1").kind == "head"


def test_rescaling_under_grouped_query_attention_covers_the_shared_key_value_head(
        tiny_llama_dir):
    model = load_pretrained(tiny_llama_dir).model  # 2 layers x 4 query heads, 2 kv heads each
    scaled = grad_multipliers(model, ["L0H3", "L1H0"], rescale=True)
    d = 8  # H / h = 8 / 2 = 4 on every entry the two heads own
    q = scaled["blocks.0.attn.q.weight"]
    assert (q[3 * d:] == 4).all() and (q[:3 * d] == 0).all()
    k = scaled["blocks.0.attn.k.weight"]  # L0H3's key/value head 1: trained and rescaled
    assert (k[d:2 * d] == 4).all() and (k[:d] == 0).all()
    assert (scaled["blocks.1.attn.v.weight"][:d] == 4).all()  # L1H0's key/value head 0
    o = scaled["blocks.0.attn.o.weight"]
    assert (o[:, 3 * d:] == 4).all() and (o[:, :3 * d] == 0).all()
