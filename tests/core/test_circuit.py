"""Circuits run with everything outside them ablated: the whole graph is the model, the empty
graph is the corrupt run, and single dropped edges equal a brute-force hooked run."""

import functools

import pytest
import torch

from arithinterp.components import hook_name
from arithinterp.core.circuit import ablated_outputs, run_edges, run_nodes, sender_outputs
from arithinterp.core.engine import capture_activations, run
from arithinterp.core.graph import Node, build_graph
from arithinterp.core.interventions import Add, Intervention, patch
from arithinterp.models import ModelSpec, build_model, facts
from arithinterp.tasks import TaskSpec, make_digit_pairs
from arithinterp.weights import native_weights
from tests.conftest import with_random_biases

TASK = TaskSpec(digits_a=2, digits_b=2, format="reversed")


@functools.cache
def case(n_layers: int):
    spec = ModelSpec(n_layers=n_layers, d_model=24, n_heads=3, d_mlp=48, seed=5)
    model = with_random_biases(build_model(spec, TASK)).eval()
    pairs = make_digit_pairs(TASK, 6, operand="a", digit=0, seed=1)
    return model, pairs.clean.tokens, pairs.corrupt.tokens


def _graph(model):
    f = facts(model)
    return build_graph(f.n_layers, f.n_heads, attn_only=f.attn_only)


@pytest.mark.parametrize("ablation", ["patch", "mean", "zero"])
def test_the_whole_graph_is_the_model_and_the_empty_one_the_ablated_run(ablation):
    model, clean, corrupt = case(2)
    w, g = native_weights(model), _graph(model)
    ablated = ablated_outputs(w, g, ablation, clean, corrupt)
    with torch.inference_mode():
        full = run_edges(w, clean, g, set(g.edges), ablated)
        torch.testing.assert_close(full, model(clean)[:, -1], atol=1e-4, rtol=0)
        empty = run_edges(w, clean, g, set(), ablated)
        if ablation == "patch":
            torch.testing.assert_close(empty, model(corrupt)[:, -1], atol=1e-4, rtol=0)
        else:  # the logits read the ablated outputs plus the biases only
            assert (empty - full).abs().max() > 1e-3


def test_one_dropped_key_edge_equals_the_head_s_keys_from_the_corrupt_run():
    model, clean, corrupt = case(1)
    w, g = native_weights(model), _graph(model)
    dropped = next(e for e in g.edges if e.name == "embed->L0H1.k")
    keep = set(g.edges) - {dropped}
    got = run_edges(w, clean, g, keep, ablated_outputs(w, g, "patch", clean, corrupt))
    # brute force: layer 0's key input is embed + pos_embed, and the position embedding is
    # the same in both runs, so head 1's keys are the corrupt run's
    with torch.inference_mode():
        donor = capture_activations(model, corrupt, [hook_name("k", 0)])
        expected = run(model, clean, [patch("k", 0, donor, head=1)]).logits[:, -1]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert (got - model(clean)[:, -1]).abs().max() > 1e-3


def test_one_dropped_logit_edge_equals_moving_the_logits_input_by_hand():
    model, clean, corrupt = case(2)
    w, g = native_weights(model), _graph(model)
    dropped = next(e for e in g.edges if e.name == "L0.mlp->logits")
    got = run_edges(w, clean, g, set(g.edges) - {dropped},
                    ablated_outputs(w, g, "patch", clean, corrupt))
    change = (sender_outputs(w, corrupt, g)[Node("mlp", 0)]
              - sender_outputs(w, clean, g)[Node("mlp", 0)])
    with torch.inference_mode():
        expected = run(model, clean, [Intervention("logits_in", Add(change))]).logits[:, -1]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_a_node_circuit_of_every_node_is_the_model_and_of_none_the_corrupt_run():
    model, clean, corrupt = case(2)
    g = _graph(model)
    with torch.inference_mode():
        torch.testing.assert_close(run_nodes(model, clean, corrupt, set(g.nodes), g),
                                   model(clean), atol=1e-5, rtol=0)
        # with every head and MLP from the corrupt run, only the embeddings' direct paths
        # to the logits still read the clean prompt
        none = run_nodes(model, clean, corrupt, set(), g)
        assert (none - model(clean)).abs().max() > 1e-3


def test_unknown_edges_and_ablations_are_refused():
    model, clean, corrupt = case(1)
    w, g = native_weights(model), _graph(model)
    other = build_graph(3, 3)
    with pytest.raises(ValueError, match="not in the graph"):
        run_edges(w, clean, g, set(other.edges), ablated_outputs(w, g, "zero", clean, corrupt))
    with pytest.raises(ValueError, match="ablation must be one of"):
        ablated_outputs(w, g, "resample", clean, corrupt)
