"""Shared by every figure: colour scales, token labels and the clickable heatmap.

Signed heatmaps use ``RdBu`` centred on 0. Heatmaps a reader may click carry a
near-transparent ``go.Scatter`` of square markers, one per cell (trace 1, ``meta="cells"``),
whose ``customdata`` holds the cell's keys: Plotly heatmaps report no point selections to
Streamlit, scatter points do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

SIGNED_SCALE = "RdBu"
SIGNED_BLUE = "rgb(33,102,172)"  # the blue end of RdBu
UNSIGNED_SCALE = "Blues"
CELLS = "cells"  # meta of the clickable overlay trace
OVERLAY_OPACITY = 0.002  # invisible on flat colours (0.01 shows), still hit by clicks


def unique_labels(labels: Sequence[str]) -> list[str]:
    """Labels made unique (categorical axes merge equal labels) by prefixing the index."""
    labels = [str(x) for x in labels]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{i}:{x}" for i, x in enumerate(labels)]


def token_labels(chars: Sequence[str], position_labels: Sequence[str] | None = None) -> list[str]:
    """Axis labels for the tokens of one prompt: '1 (a1)', '+', '<bos>' (unique)."""
    if position_labels is None:
        return unique_labels(chars)
    return unique_labels([c if c == p or p.startswith("<") else f"{c} ({p})"
                          for c, p in zip(chars, position_labels, strict=True)])


def clickable_heatmap_figure(
    z: np.ndarray, x: Sequence[str], y: Sequence[str], *, keys: Sequence[Sequence],
    title: str, x_title: str, y_title: str, color_title: str, signed: bool = True,
    zrange: tuple[float, float] | None = None, selected: tuple[int, int] | None = None,
    mark_col: int | None = None, mark_label: str = "",
) -> go.Figure:
    """A heatmap (rows y, columns x) with a clickable overlay; keys[i][j] = cell i, j's keys.

    `zrange` fixes the colour range (written on the colour bar), else it follows the data;
    `selected` = (i, j) outlines that cell; `mark_col` draws a dashed line through column j
    labelled `mark_label` (e.g. the position a metric is read at).
    """
    z = np.asarray(z, dtype=float)
    if z.shape != (len(y), len(x)):
        raise ValueError(f"z has shape {z.shape}, labels give {(len(y), len(x))}")
    opts = ({"color_continuous_scale": SIGNED_SCALE, "color_continuous_midpoint": 0}
            if signed else {"color_continuous_scale": UNSIGNED_SCALE})
    if zrange is not None:
        opts = {**opts, "zmin": zrange[0], "zmax": zrange[1]}
        opts.pop("color_continuous_midpoint", None)
        color_title = f"{color_title}<br>[{zrange[0]:.3g}, {zrange[1]:.3g}]"
    fig = px.imshow(z, x=list(x), y=list(y), aspect="auto", **opts,
                    labels={"x": x_title, "y": y_title, "color": color_title})
    fig.update_traces(hoverinfo="skip", hovertemplate=None, selector={"type": "heatmap"})
    cells = [(i, j) for i in range(len(y)) for j in range(len(x)) if np.isfinite(z[i, j])]
    size = int(np.clip(480 / max(len(x), len(y), 1), 10, 40))
    fig.add_trace(go.Scatter(
        x=[x[j] for _, j in cells], y=[y[i] for i, _ in cells], mode="markers",
        marker={"symbol": "square", "size": size, "color": "black", "opacity": OVERLAY_OPACITY,
                "line": {"width": 0}},
        selected={"marker": {"opacity": OVERLAY_OPACITY}},
        unselected={"marker": {"opacity": OVERLAY_OPACITY}},
        customdata=[[*keys[i][j], float(z[i, j])] for i, j in cells],
        hovertemplate=(f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>{color_title} "
                       f"%{{customdata[{len(keys[0][0]) if cells else 0}]:.4g}}<extra></extra>"),
        showlegend=False, meta=CELLS, name="cells",
    ))
    fig.update_xaxes(type="category", title_text=x_title, side="bottom")
    fig.update_yaxes(type="category", title_text=y_title, autorange="reversed")
    fig.update_layout(title=title, clickmode="event+select", hovermode="closest",
                      height=max(260, 60 + 42 * len(y)))
    if mark_col is not None and 0 <= mark_col < len(x):
        fig.add_vline(x=mark_col, line_dash="dash", line_color="black", line_width=1.5,
                      annotation_text=mark_label, annotation_position="top")
    if selected is not None:
        i, j = selected
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                      line={"color": "gold", "width": 4}, name="selected")
    return fig
