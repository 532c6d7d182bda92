"""Selective fine-tuning: gain against forgetting (or perplexity) per arm, and curves over
fine-tuning steps.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

FT_COLORS = {"selected": "#1f77b4", "random": "#ff7f0e", "full": "#d62728", "none": "#7f7f7f"}


def gain_forgetting_figure(comparison: pd.DataFrame) -> go.Figure:
    """Change of held-out exact match on the target task (x, the gain) against the mean
    change on the other tasks (y, negative: forgetting): one point per arm, draw and seed,
    a large marker at each arm's mean.

    `comparison`: the ``schema.FINETUNE_COMPARISON`` table.
    """
    keys = ["arm", "draw", "seed", "components"]
    target = comparison[comparison["role"] == "target"].set_index(keys)["change"]
    other = comparison[comparison["role"] == "other"].groupby(keys)["change"].mean()
    both = pd.DataFrame({"gain": target, "other": other}).reset_index()
    if both["other"].isna().all():
        both["other"] = 0.0  # no other task: forgetting is not measured
    return _arm_points(both, "other", title="Gain on the target task vs change on the others "
                       "(forgetting < 0)", yaxis_title="Δ exact match, other tasks")


def gain_perplexity_figure(comparison: pd.DataFrame) -> go.Figure:
    """A pretrained LLM's change of held-out exact match on the target suite (x, the gain)
    against the relative change of its perplexity on held-out text (y, in %; positive:
    language forgotten): one point per arm, draw and seed, a large marker at each arm's mean.

    `comparison`: an LLM's ``schema.FINETUNE_COMPARISON`` table (with ppl_before/ppl_after).
    """
    target = comparison[comparison["role"] == "target"]
    both = target[["arm", "draw", "seed", "components"]].assign(
        gain=target["change"],
        ppl=100 * (target["ppl_after"] / target["ppl_before"] - 1))
    return _arm_points(both, "ppl", title="Gain on the target suite vs change of perplexity "
                       "on held-out text (forgetting > 0)",
                       yaxis_title="perplexity change, %")


def _arm_points(points: pd.DataFrame, y: str, *, title: str, yaxis_title: str) -> go.Figure:
    """Columns gain (x) and `y` per arm, draw and seed; a diamond at each arm's mean."""
    fig = go.Figure()
    for arm, g in points.groupby("arm", sort=False):
        color = FT_COLORS.get(str(arm))
        fig.add_trace(go.Scatter(x=g["gain"], y=g[y], mode="markers", name=str(arm),
                                 marker={"color": color, "size": 8, "opacity": 0.6},
                                 customdata=g[["components", "seed"]].to_numpy(),
                                 hovertemplate=f"{arm}: %{{customdata[0]}} (seed "
                                               "%{customdata[1]})<br>gain %{x:.3f}, "
                                               f"{y} %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[g["gain"].mean()], y=[g[y].mean()], mode="markers",
                                 name=f"{arm} mean", showlegend=False,
                                 marker={"color": color, "size": 16, "symbol": "diamond",
                                         "line": {"width": 1, "color": "black"}}))
    fig.add_hline(y=0, line_dash="dot", line_color="grey")
    fig.add_vline(x=0, line_dash="dot", line_color="grey")
    fig.update_layout(title=title, xaxis_title="Δ exact match, target",
                      yaxis_title=yaxis_title, height=420)
    return fig


def finetune_curves_figure(curves: pd.DataFrame, *, value: str = "exact_match") -> go.Figure:
    """`value` (held-out exact match of the target, or the training loss) over fine-tuning
    steps, one line per arm, draw and seed."""
    df = curves.dropna(subset=[value])
    fig = go.Figure()
    shown = set()
    for (arm, draw, seed), g in df.sort_values("step").groupby(["arm", "draw", "seed"]):
        fig.add_trace(go.Scatter(x=g["step"], y=g[value], mode="lines+markers", name=str(arm),
                                 legendgroup=str(arm), showlegend=arm not in shown,
                                 line={"color": FT_COLORS.get(str(arm))},
                                 hovertemplate=f"{arm} draw {draw} seed {seed}<br>step %{{x}}: "
                                               "%{y:.3f}<extra></extra>"))
        shown.add(arm)
    fig.update_layout(title=f"{value.replace('_', ' ')} over fine-tuning", xaxis_title="step",
                      yaxis_title=value, height=360)
    return fig
