"""Patching grids, several sites on one scale, one cell's spread, path patching and knockout."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from arithinterp.viz.common import CELLS
from arithinterp.viz.patching import (
    effect_distribution_figure,
    knockout_figure,
    patching_figure,
    patching_panels_figure,
    paths_figure,
)
from tests.viz.conftest import LABELS, patch_table


def overlay(fig: go.Figure):
    cells = [t for t in fig.data if t.meta == CELLS]
    assert len(cells) == 1
    return cells[0]


def test_patching_layer_by_position_heatmap_has_labels_and_a_clickable_cell_each():
    fig = patching_figure(patch_table(), rows="layer", cols="pos", value="normalized")
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert list(heat.x) == LABELS and list(heat.y) == ["L0", "L1"]
    assert np.asarray(heat.z).shape == (2, len(LABELS))
    assert np.asarray(heat.z)[1, 3] == pytest.approx((1 + 0.3) / 2 - 0.5)
    assert fig.layout.coloraxis.colorscale[0][1] == "rgb(103,0,31)"  # RdBu
    assert fig.layout.coloraxis.cmid == 0
    cells = overlay(fig)
    assert cells.type == "scatter" and cells.marker.symbol == "square"
    assert cells.marker.opacity < 0.05
    assert len(cells.x) == 2 * len(LABELS)
    # customdata: [layer, pos, value]; point (L1, b0) sits on that cell's labels
    i = [tuple(c[:2]) for c in cells.customdata].index((1, 3))
    assert (cells.y[i], cells.x[i]) == ("L1", "b0")
    assert cells.customdata[i][2] == pytest.approx(0.15)
    assert fig.layout.xaxis.type == "category" and fig.layout.xaxis.title.text == "position"


def test_patching_raw_values_layer_by_head_and_head_by_position():
    heads_all = patch_table(site="z", by_pos=False, heads=3)
    fig = patching_figure(heads_all, rows="layer", cols="head", value="value")
    assert list(fig.data[0].x) == ["H0", "H1", "H2"] and list(fig.data[0].y) == ["L0", "L1"]
    assert np.asarray(fig.data[0].z)[1, 2] == pytest.approx(1.02)
    assert len(overlay(fig).x) == 6
    by_pos = patch_table(site="z", heads=3)
    one_layer = by_pos[by_pos["layer"] == 1]
    fig = patching_figure(one_layer, rows="head", cols="pos")
    assert list(fig.data[0].y) == ["H0", "H1", "H2"] and list(fig.data[0].x) == LABELS
    assert len(overlay(fig).x) == 3 * len(LABELS)
    fig = patching_figure(by_pos, rows="component", cols="pos")
    assert list(fig.data[0].y) == [f"L{L}H{h}" for L in range(2) for h in range(3)]


def test_patching_figure_rejects_unknown_axes_and_values():
    with pytest.raises(ValueError, match="rows and cols"):
        patching_figure(patch_table(), rows="layer", cols="token")
    with pytest.raises(ValueError, match="value"):
        patching_figure(patch_table(), value="restored")


def test_a_fixed_scale_a_selected_cell_and_the_metric_position_are_drawn():
    fig = patching_figure(patch_table(), value="normalized", zrange=(-1.0, 1.0),
                              selected=(1, 3), mark_pos=6, mark_label="logit_diff(c1)")
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == (-1, 1) and "[-1, 1]" in axis.colorbar.title.text
    (outline,) = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (2.5, 3.5, 0.5, 1.5)  # L1, b0
    (line,) = [s for s in fig.layout.shapes if s.type == "line"]
    assert line.x0 == line.x1 == 6  # the column of position 6 ('=')
    assert fig.layout.annotations[0].text == "logit_diff(c1)"
    free = patching_figure(patch_table(), value="normalized")
    assert free.layout.coloraxis.cmin is None and not free.layout.shapes
    # a selection outside this grid (another layer, say) outlines nothing
    assert not patching_figure(patch_table(), selected=(5, 0)).layout.shapes


def test_every_site_side_by_side_on_one_scale():
    table = pd.concat([patch_table(site=site).assign(normalized=scale * patch_table()["normalized"])
                       for site, scale in (("resid_pre", 1.0), ("attn_out", 3.0))])
    fig = patching_panels_figure(table, ["resid_pre", "attn_out"], rows="layer", cols="pos",
                                     value="normalized")
    left, right = fig.data
    assert np.asarray(right.z) == pytest.approx(3 * np.asarray(left.z))
    bound = float(np.abs(np.asarray(right.z)).max())  # one scale: the largest |value| shown
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-bound, bound)
    assert left.coloraxis == right.coloraxis == "coloraxis" and list(left.x) == LABELS
    fixed = patching_panels_figure(table, ["attn_out"], rows="layer", cols="pos",
                                       value="normalized", zrange=(-1.0, 1.0))
    assert "[-1, 1]" in fixed.layout.coloraxis.colorbar.title.text
    with pytest.raises(ValueError, match="no rows for site 'mlp_out'"):
        patching_panels_figure(table, ["mlp_out"], rows="layer", cols="pos")


def test_effect_distribution_histogram_with_baselines():
    fig = effect_distribution_figure(torch.tensor([0.0, 0.5, 1.0, 1.5]), clean=2.0,
                                         corrupted=-1.0, title="L0H1")
    assert fig.data[0].type == "histogram" and len(fig.data[0].x) == 4
    assert sorted(s.x0 for s in fig.layout.shapes) == [-1.0, 0.75, 2.0]
    assert fig.layout.title.text == "L0H1"


def test_paths_and_knockout_figures():
    paths = pd.DataFrame({"sender": ["L0H0", "L0H1", "L0H0"], "receiver": ["logits", "logits",
                                                                          "L1H0"],
                          "receiver_input": [None, None, "q"], "value": [1.0, 2.0, 3.0],
                          "normalized": [0.1, 0.2, 0.3]})
    fig = paths_figure(paths)
    assert {t.name for t in fig.data} == {"logits", "L1H0.q"}
    knock = pd.DataFrame({"condition": ["none", "selected"], "components": ["", "L0H0"],
                          "exact_match": [1.0, 0.1], "metric_drop": [0.0, 4.5]})
    accuracy, drop = knockout_figure(knock).data
    assert list(accuracy.x) == ["none", "selected"] and list(drop.y) == [0.0, 4.5]
    assert list(accuracy.text) == list(drop.text) == ["(none)", "L0H0"]  # named on the bars
    assert len(knockout_figure(knock.drop(columns="metric_drop")).data) == 1
