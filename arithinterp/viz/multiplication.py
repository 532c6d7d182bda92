"""The multiplication study: per-answer-digit curves and values of its arms (SFT, ICoT,
auxiliary loss).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

ARM_COLORS = {"sft": "#d62728", "icot": "#1f77b4", "aux": "#2ca02c"}


def digit_curves_figure(curves: pd.DataFrame, *, value: str = "digit_accuracy") -> go.Figure:
    """Per-answer-digit `value` (digit_accuracy or digit_loss) over training steps: one panel
    per digit, one line per (arm, seed), coloured by arm.

    `curves`: the ``schema.STUDY_CURVES`` table (step, digit, arm, seed, ...).
    """
    if value not in curves.columns:
        raise ValueError(f"value must be a column of the curves, got {value!r}")
    digits = sorted(int(d) for d in curves["digit"].unique())
    fig = make_subplots(rows=1, cols=len(digits), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[f"c{d}" for d in digits])
    shown = set()
    for (arm, seed), g in curves.sort_values("step").groupby(["arm", "seed"], sort=True):
        for j, d in enumerate(digits):
            part = g[g["digit"] == d]
            fig.add_trace(go.Scatter(
                x=part["step"], y=part[value], mode="lines", name=str(arm),
                legendgroup=str(arm), showlegend=arm not in shown,
                line={"color": ARM_COLORS.get(str(arm)), "dash": "solid" if seed == 0
                      else "dot"},
                hovertemplate=f"{arm} seed {seed} c{d}<br>step %{{x}}: %{{y:.3f}}"
                              "<extra></extra>"), row=1, col=j + 1)
            shown.add(arm)
    fig.update_xaxes(title_text="step")
    if value == "digit_accuracy":
        fig.update_yaxes(range=[0, 1.02])
    else:
        fig.update_yaxes(type="log")
    fig.update_yaxes(title_text=value, row=1, col=1)
    fig.update_layout(title=f"{value.replace('_', ' ')} per answer digit over training "
                            "(solid: seed 0, dotted: other seeds)", height=360)
    return fig


def arm_digits_figure(comparison: pd.DataFrame, *, prefix: str, title: str,
                      y_title: str) -> go.Figure:
    """One value per answer digit (columns ``{prefix}{k}``) for every arm: bars at the mean
    over seeds, each seed a point."""
    cols = sorted((c for c in comparison.columns if c.startswith(prefix)),
                  key=lambda c: int(c.removeprefix(prefix)))
    if not cols:
        raise ValueError(f"the comparison has no {prefix}<k> columns")
    labels = [f"c{c.removeprefix(prefix)}" for c in cols]
    fig = go.Figure()
    for arm, g in comparison.groupby("arm", sort=False):
        fig.add_trace(go.Bar(x=labels, y=g[cols].mean().to_numpy(), name=str(arm),
                             marker_color=ARM_COLORS.get(str(arm)), offsetgroup=str(arm)))
        for _, row in g.iterrows():
            fig.add_trace(go.Scatter(x=labels, y=row[cols].to_numpy(dtype=float),
                                     mode="markers", marker={"color": "black", "size": 6},
                                     name=f"{arm} seed {row['seed']}", showlegend=False,
                                     offsetgroup=str(arm)))
    fig.update_layout(title=title, barmode="group", xaxis_title="answer digit",
                      yaxis_title=y_title, xaxis_type="category", scattermode="group")
    return fig
