"""Components as objects, their names both ways, and the one hook-name helper."""

import pytest
from transformer_lens.utilities import get_act_name

from arithinterp.components import (
    _SITES,
    Component,
    all_components,
    check_component,
    hook_name,
    neuron_label,
    parse_components,
    register_site,
    site_info,
    sites,
)
from arithinterp.models import ModelSpec, build_model, facts
from arithinterp.tasks import TaskSpec
from tests.conftest import BAD_CONFIG


@pytest.mark.parametrize("name, comp", [
    ("L1H3", Component("head", 1, 3)), ("L0.mlp", Component("mlp", 0)),
    ("L2.attn", Component("attn", 2)), ("L0.resid", Component("resid", 0)),
    ("L12H11", Component("head", 12, 11)),
])
def test_names_round_trip(name, comp):
    assert Component.parse(name) == comp and comp.name == name and str(comp) == name


@pytest.mark.parametrize("bad", ["L0", "H1", "L1H", "l1h2", "L0.MLP", "L-1H2", "L0.resid2", ""])
def test_bad_names_are_refused_with_the_forms(bad):
    with pytest.raises(ValueError, match="is not a component name"):
        Component.parse(bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "neuron", "layer": 0}, "kind must be one of"),
    ({"kind": "head", "layer": 0}, "head must be"), ({"kind": "mlp", "layer": 0, "head": 1},
                                                      "has no head"),
    ({"kind": "mlp", "layer": -1}, "layer must be"), ({"kind": "mlp", "layer": True}, "layer"),
])
def test_bad_components(kwargs, message):
    with pytest.raises(BAD_CONFIG, match=message if kwargs["kind"] != "neuron" else "kind"):
        Component(**kwargs)


@pytest.mark.parametrize("site", [s for s in sites() if site_info(s).per_layer])
def test_hook_names_equal_transformer_lens(site):
    tl_site = {"mlp_pre": "pre", "mlp_post": "post"}.get(site, site)
    assert hook_name(site, 3) == get_act_name(tl_site, 3)


def test_every_registered_site_is_a_hook_of_a_native_model(tiny_model):
    hooks = set(tiny_model.hook_dict)
    for site in sites():
        name = hook_name(site, 0) if site_info(site).per_layer else hook_name(site)
        assert name in hooks, site


def test_receiver_inputs_are_registered_with_their_component():
    assert set(sites("input")) == {"q_input", "k_input", "v_input", "mlp_in", "logits_in"}
    assert site_info("q_input").kind == "head"
    assert site_info("q_input").axes == ("batch", "pos", "head", "d_model")
    assert site_info("mlp_in").kind == "mlp"
    assert site_info("z").role == "output"


def test_a_new_site_registers_once_and_is_named_like_the_others():
    name = "test_features"
    try:
        register_site(name, "blocks.{L}.hook_resid_post", ("batch", "pos", "feature"),
                      kind="resid")
        assert hook_name(name, 2) == "blocks.2.hook_resid_post"
        assert site_info(name).axes[-1] == "feature"
        with pytest.raises(ValueError, match="already registered"):
            register_site(name, "x.{L}", ("batch",))
    finally:
        _SITES.pop(name, None)
    with pytest.raises(ValueError, match="must include 'batch'"):
        register_site("no_batch", "x", ("pos",))


def test_layer_free_hooks_and_errors():
    assert hook_name("embed") == get_act_name("embed")
    assert hook_name("pos_embed") == get_act_name("pos_embed")
    assert hook_name("scale") == "ln_final.hook_scale"
    with pytest.raises(ValueError, match="unknown site"):
        hook_name("hook_z", 0)
    with pytest.raises(ValueError, match="has no layer"):
        hook_name("embed", 0)
    with pytest.raises(ValueError, match="layer must be"):
        hook_name("z")


def test_every_hook_fires_on_a_model(tiny_model):
    names = {hook_name(s, 1) for s in ("resid_pre", "resid_mid", "resid_post", "attn_out",
                                       "mlp_out", "z", "q", "k", "v", "pattern", "mlp_pre",
                                       "mlp_post", "attn_scores")}
    names |= {hook_name("embed"), hook_name("pos_embed"), hook_name("scale")}
    assert names <= set(tiny_model.hook_dict), names - set(tiny_model.hook_dict)


def test_all_components_in_forward_order(tiny_model):
    f = facts(tiny_model)
    comps = all_components(f)
    assert [c.name for c in comps] == ["L0H0", "L0H1", "L0H2", "L0H3", "L0.mlp",
                                       "L1H0", "L1H1", "L1H2", "L1H3", "L1.mlp"]
    assert sorted(comps, key=lambda c: c.order) == comps
    assert [c.name for c in all_components(f, "resid")] == ["L0.resid", "L1.resid"]
    attn_only = facts(build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2, attn_only=True),
                                  TaskSpec(digits_a=1, digits_b=1)))
    assert all_components(attn_only, "mlp") == []


def test_check_component_names_what_the_model_lacks(tiny_model):
    f = facts(tiny_model)
    assert check_component(f, "L1H3") == Component("head", 1, 3)
    for bad in ("L2H0", "L0H4", "L5.mlp"):
        with pytest.raises(ValueError, match="is not in this model"):
            check_component(f, bad)
    with pytest.raises(ValueError, match="duplicates"):
        parse_components(["L0H1", "L0H1"], f)
    assert parse_components(["L0H1", "L1.mlp"]) == [Component("head", 0, 1),
                                                     Component("mlp", 1)]


def test_a_neuron_is_named_by_its_layer():
    assert neuron_label(1, 37) == "L1.n37"
