"""The training curve: loss and held-out accuracy over steps."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def training_curve_figure(curve: pd.DataFrame) -> go.Figure:
    """Loss (top) and held-out exact match and per-digit accuracy (bottom) over steps.

    `curve`: the ``schema.TRAINING_CURVE`` table (step, loss, exact_match, digit,
    digit_accuracy).
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("training loss", "held-out accuracy"))
    steps = curve.drop_duplicates("step").sort_values("step")
    fig.add_trace(go.Scatter(x=steps["step"], y=steps["loss"], mode="lines+markers",
                             name="loss"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps["step"], y=steps["exact_match"], mode="lines+markers",
                             name="exact match", line={"width": 3}), row=2, col=1)
    if "digit" in curve.columns:
        for digit, g in curve.sort_values("step").groupby("digit"):
            fig.add_trace(go.Scatter(x=g["step"], y=g["digit_accuracy"], mode="lines",
                                     name=f"c{int(digit)}", line={"dash": "dot"}), row=2, col=1)
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(title="Training curve", height=520, legend_title_text="")
    return fig
