"""Held-out accuracy of a trained model: per answer digit and by number of carries."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go


def digit_accuracy_figure(digit_accuracy: Sequence[float]) -> go.Figure:
    """Held-out accuracy of each answer digit (c0 = least significant)."""
    labels = [f"c{k}" for k in range(len(digit_accuracy))]
    fig = go.Figure(go.Bar(x=labels, y=list(digit_accuracy), text=[f"{v:.3f}" for v in
                                                                   digit_accuracy]))
    fig.update_layout(title="Accuracy per answer digit", xaxis_title="answer digit",
                      yaxis_title="accuracy", yaxis_range=[0, 1.05])
    return fig


def accuracy_by_carries_figure(by_carries: pd.DataFrame) -> go.Figure:
    """Exact match by number of carries (bar text: number of problems)."""
    df = by_carries.sort_values("n_carries")
    fig = go.Figure(go.Bar(x=df["n_carries"].astype(str), y=df["exact_match"],
                           text=[f"n={int(n)}" for n in df["count"]] if "count" in df else None,
                           customdata=df.get("count")))
    fig.update_layout(title="Exact match by number of carries", xaxis_title="carries",
                      yaxis_title="exact match", yaxis_range=[0, 1.05])
    return fig
