"""Single MLP neurons: their direct logit attribution, patching effects and activations."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def neuron_dla_figure(table: pd.DataFrame, *, title: str = "Neurons by |DLA|") -> go.Figure:
    """Bars of per-neuron DLA (mean, std as error bars): rows of `neurons.neuron_table`."""
    fig = px.bar(table, x="component", y="dla", error_y="dla_std", title=title)
    fig.update_layout(xaxis_type="category", yaxis_title="DLA (logit difference)")
    return fig


def neuron_patching_figure(patched: pd.DataFrame, *, title: str = "Neuron patching"
                           ) -> go.Figure:
    """Grouped bars of single-neuron patching effects, one colour per direction
    (columns: component, effect, direction)."""
    fig = px.bar(patched, x="component", y="effect", color="direction", barmode="group",
                 title=title)
    fig.update_layout(xaxis_type="category", yaxis_title="effect (0 = none, 1 = all the way)")
    return fig


def activation_by_figure(by: pd.DataFrame, name: str, *, title: str = "") -> go.Figure:
    """A neuron's mean activation (± std) per value of one property (`neurons.activation_by`)."""
    fig = px.bar(by, x=name, y="activation", error_y="activation_std", hover_data=["count"],
                 title=title or f"Mean activation by {name}")
    fig.update_layout(xaxis_type="category")
    return fig
