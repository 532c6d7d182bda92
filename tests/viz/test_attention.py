"""Attention patterns, the coloured-tokens view and attention on operand digits."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from arithinterp.viz.attention import (
    TOKENS_VIEW_ID,
    attention_graph_figure,
    attention_heads_figure,
    attention_pattern_figure,
    attention_tokens_html,
    operand_attention_figure,
)


def test_attention_pattern_is_causal_with_token_labels():
    raw = torch.rand(4, 4).tril()
    pattern = raw / raw.sum(-1, keepdim=True)
    fig = attention_pattern_figure(pattern, ["<bos>", "1", "+", "1"], title="L0H0")
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[0, 1]) and np.allclose(np.nansum(z, 1), 1)
    assert list(fig.data[0].x) == ["0:<bos>", "1:1", "2:+", "3:1"]
    assert fig.layout.xaxis.title.text == "key" and fig.layout.yaxis.title.text == "query"
    with pytest.raises(ValueError, match="labels"):
        attention_pattern_figure(pattern, ["a", "b"])
    marked = attention_pattern_figure(pattern, ["<bos>", "1", "+", "1"], mark_query=2)
    assert marked.layout.shapes[0].y0 == marked.layout.shapes[0].y1 == 2


def test_all_heads_of_a_layer_side_by_side_on_one_scale():
    raw = torch.rand(3, 4, 4).tril()
    patterns = (raw / raw.sum(-1, keepdim=True)).numpy()
    fig = attention_heads_figure(patterns, ["<bos>", "1", "+", "1"], ["L0H0", "L0H1", "L0H2"],
                                     mark_query=2)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 3 and {t.coloraxis for t in heat} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 1)
    assert np.isnan(np.asarray(heat[1].z, dtype=float)[0, 1])  # causal mask
    assert [a.text for a in fig.layout.annotations][:3] == ["L0H0", "L0H1", "L0H2"]
    assert len([s for s in fig.layout.shapes if s.type == "line"]) == 3
    with pytest.raises(ValueError, match="expected"):
        attention_heads_figure(patterns, ["a", "b"], ["L0H0"])


def test_attention_on_tokens_is_self_contained_html_with_the_patterns():
    raw = torch.rand(2, 4, 4).tril()
    patterns = (raw / raw.sum(-1, keepdim=True)).numpy()
    html = attention_tokens_html(patterns, ["<bos>", "1", "</script>", "2"], ["L0H0", "L0H1"],
                                     mark_query=3, head=1)
    assert "http" not in html and html.count("<script>") == 1  # no network, one script
    assert html.count("</script>") == 1  # a token's text cannot close the script
    data = json.loads(re.search(r"const D = (.*);\n", html).group(1))  # JSON reads <\/ as </
    assert data["tokens"][2] == "</script>" and data["heads"] == ["L0H0", "L0H1"]
    assert np.allclose(data["patterns"], patterns, atol=1e-4)
    assert (data["mark"], data["head"]) == (3, 1)
    assert TOKENS_VIEW_ID in html
    with pytest.raises(ValueError, match="expected"):
        attention_tokens_html(patterns, ["a", "b"], ["L0H0", "L0H1"])


def test_operand_attention_one_panel_per_answer_digit():
    rows = [{"layer": L, "head": h, "component": f"L{L}H{h}", "digit": d, "query_pos": 4 + d,
             "key": k, "key_pos": None, "attention": 0.25, "std": 0.0}
            for L in range(2) for h in range(2) for d in range(3)
            for k in ("a0", "b0", "other")]
    fig = operand_attention_figure(pd.DataFrame(rows))
    assert len(fig.data) == 3
    assert list(fig.data[0].x) == ["a0", "b0", "other"]
    assert list(fig.data[0].y) == ["L0H0", "L0H1", "L1H0", "L1H1"]


def test_attention_graph_draws_one_arc_per_edge_between_positions():
    edges = pd.DataFrame({"key_pos": [0, 1, 2], "query_pos": [2, 1, 3],
                          "attention": [0.5, 1.0, 0.25]})
    fig = attention_graph_figure(edges, ["<bos>", "1", "+", "1"])
    tokens, *arcs = fig.data
    assert list(tokens.text) == ["0:<bos>", "1:1", "2:+", "3:1"]
    assert len(arcs) == 2  # the self-attention edge 1 -> 1 draws none
    assert (arcs[0].x[0], arcs[0].x[-1]) == (0, 2)
    assert max(arcs[0].y) == pytest.approx(1.0, abs=0.01)  # as high as half its span
    assert arcs[0].line.width == pytest.approx(1 + 5 * 0.5)
