"""The graph as data: which edges exist, names, scores and pruning."""

import pytest
import torch

from arithinterp.core.graph import Edge, Node, build_graph


def test_edges_run_forward_only_and_are_counted_by_hand():
    g = build_graph(2, 2)  # embed, pos_embed; L0H0 L0H1 L0.mlp; L1H0 L1H1 L1.mlp; logits
    assert [n.name for n in g.nodes] == ["embed", "pos_embed", "L0H0", "L0H1", "L0.mlp",
                                         "L1H0", "L1H1", "L1.mlp", "logits"]
    # layer 0 heads: 2 senders x 3 inputs x 2 heads; L0.mlp: 4 senders; layer 1 heads: 5 x 3
    # x 2; L1.mlp: 7; logits: 8
    assert len(g.edges) == 12 + 4 + 30 + 7 + 8
    names = {e.name for e in g.edges}
    assert {"L0H1->L1H0.k", "L0.mlp->L1.mlp", "embed->logits", "L0H0->L0.mlp"} <= names
    assert "L1H0->L0.mlp" not in names and "L0H0->L0H1.q" not in names


def test_grouped_query_attention_has_one_key_value_receiver_per_shared_head():
    g = build_graph(1, 4, attn_only=True, pos_embed=False, n_kv_heads=2)
    k_receivers = sorted({e.receiver.name for e in g.edges if e.input == "k"})
    assert k_receivers == ["L0H0", "L0H2"] and g.group == 2
    assert len([e for e in g.edges if e.input == "q"]) == 4
    with pytest.raises(ValueError, match="must divide"):
        build_graph(1, 4, n_kv_heads=3)


def test_scores_prune_by_top_n_and_threshold():
    g = build_graph(1, 1, attn_only=True, pos_embed=False)  # embed->L0H0.{q,k,v}, 2 -> logits
    assert [e.name for e in g.edges] == ["embed->L0H0.q", "embed->L0H0.k", "embed->L0H0.v",
                                         "embed->logits", "L0H0->logits"]
    g.add_scores("eap", edges=torch.tensor([0.1, -3.0, 0.5, 2.0, 0.0], dtype=torch.float64))
    assert {e.name for e in g.top_n("eap", 2)} == {"embed->L0H0.k", "embed->logits"}
    assert {e.name for e in g.threshold("eap", 0.5)} == {"embed->L0H0.k", "embed->L0H0.v",
                                                         "embed->logits"}
    assert g.top_n("eap", 0) == frozenset()
    assert list(g.to_frame()["eap"]) == [0.1, -3.0, 0.5, 2.0, 0.0]
    with pytest.raises(ValueError, match="shape"):
        g.add_scores("bad", edges=torch.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        g.add_scores("bad", nodes=torch.full((len(g.nodes),), float("nan")))
    with pytest.raises(ValueError, match="no edge scores"):
        g.top_n("exact", 1)
    with pytest.raises(ValueError, match="0..5"):
        g.top_n("eap", 6)
    assert Edge(Node("head", 0, 0), Node("logits"), "logits") in g.top_n("eap", 5)
