"""Sweeps: a value of the finished trials against one axis, the phase-transition plot."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

SWEEP_POINTS = "trials"  # meta of the clickable per-trial trace


def sweep_figure(table: pd.DataFrame, *, x: str, y: str = "exact_match",
                 color: str | None = None, log_x: bool = False) -> go.Figure:
    """`y` of a sweep's finished trials against axis `x`: one line per value of `color` at the
    mean over the other axes (e.g. seeds), a band from their min to max, and every trial as
    a point (``meta="trials"``; its ``customdata`` is [run]) — the phase-transition plot.

    `table`: the ``schema.SWEEP_TRIALS`` table (its rows with status done are drawn).
    """
    for name in (x, y, color):
        if name is not None and name not in table.columns:
            raise ValueError(f"{name!r} is not a column of the sweep's table")
    done = table[(table["status"] == "done") & table[y].notna()]
    groups = [(None, done)] if color is None else list(done.groupby(color, sort=True))
    palette = px.colors.qualitative.Plotly
    fig = go.Figure()
    for i, (value, g) in enumerate(groups):
        c = palette[i % len(palette)]
        label = y if color is None else f"{color}={value}"
        stats = g.groupby(x, sort=True)[y].agg(["mean", "min", "max", "size"]).reset_index()
        if (stats["size"] > 1).any():
            fig.add_trace(go.Scatter(x=stats[x], y=stats["max"], mode="lines", line={"width": 0},
                                     showlegend=False, hoverinfo="skip", legendgroup=label))
            fig.add_trace(go.Scatter(x=stats[x], y=stats["min"], mode="lines", line={"width": 0},
                                     fill="tonexty", fillcolor=_alpha(c, 0.18),
                                     showlegend=False, hoverinfo="skip", legendgroup=label))
        fig.add_trace(go.Scatter(x=stats[x], y=stats["mean"], mode="lines", name=label,
                                 line={"color": c}, legendgroup=label,
                                 hovertemplate=f"{label}<br>{x} %{{x}}: mean %{{y:.3f}}"
                                               "<extra></extra>"))
        fig.add_trace(go.Scatter(x=g[x], y=g[y], mode="markers", meta=SWEEP_POINTS,
                                 marker={"color": c, "size": 8}, showlegend=False,
                                 legendgroup=label, customdata=g[["run"]].to_numpy(),
                                 hovertemplate="%{customdata[0]}<br>" + f"{y} %{{y:.3f}}"
                                               "<extra>click to open</extra>"))
    fig.update_layout(title=f"{y} vs {x}" + (f" per {color}" if color else "")
                      + " (line: mean, band: min-max over the other axes)",
                      xaxis_title=x + (" (log scale)" if log_x else ""), yaxis_title=y,
                      height=440, clickmode="event+select")
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def _alpha(color: str, alpha: float) -> str:
    """A '#rrggbb' colour as rgba with the given opacity."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"
