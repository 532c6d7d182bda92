"""Logit attribution: direct logit attribution per component and per answer digit, the
logit lens, and attribution patching against exact patching.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from arithinterp.viz.common import SIGNED_SCALE

PATCH_KEYS = ("site", "by_pos", "direction", "layer", "head", "pos")


def dla_figure(dla: pd.DataFrame) -> go.Figure:
    """Direct logit attribution per component (bars coloured by kind, error bars: std)."""
    df = dla.copy()
    fig = px.bar(df, x="component", y="value", color="kind",
                 error_y="std" if "std" in df.columns else None,
                 category_orders={"component": list(df["component"])},
                 labels={"value": "logit diff contribution"})
    fig.update_layout(title="Direct logit attribution (correct − wrong)",
                      xaxis_title="component", xaxis_type="category")
    return fig


def logit_lens_figure(lens: pd.DataFrame, *, value: str = "accuracy") -> go.Figure:
    """Logit lens: `value` (accuracy, mean_prob, mean_rank) per stage (rows) x answer digit."""
    if value not in lens.columns:
        raise ValueError(f"value must be a column of the logit-lens table, got {value!r}")
    stages = list(dict.fromkeys(lens["stage"]))
    digits = sorted(lens["digit"].unique())
    z = np.full((len(stages), len(digits)), np.nan)
    for s, d, v in zip(lens["stage"], lens["digit"], lens[value], strict=True):
        z[stages.index(s), digits.index(d)] = v
    bounded = value in ("accuracy", "mean_prob")
    fig = px.imshow(z, x=[f"c{int(d)}" for d in digits], y=stages, aspect="auto",
                    color_continuous_scale="Viridis", text_auto=".2f" if len(stages) <= 12
                    else False,  # 31 stages of an LLM: numbers in the cells would pile up
                    zmin=0 if bounded else None, zmax=1 if bounded else None,
                    labels={"x": "answer digit", "y": "stage", "color": value})
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    fig.update_layout(title=f"Logit lens: {value} of the correct digit",
                      height=max(320, 120 + 16 * len(stages)))
    return fig


def attribution_scatter_figure(
    attribution: pd.DataFrame, exact: pd.DataFrame, *, value: str = "value"
) -> go.Figure:
    """Attribution-patching estimate (y) against exact patching (x) per grid cell, with y = x."""
    keys = [k for k in PATCH_KEYS if k in attribution.columns and k in exact.columns]
    cols = keys + [value] + (["component", "token"] if "component" in exact.columns else [])
    merged = exact[[c for c in cols if c in exact.columns]].merge(
        attribution[keys + [value]], on=keys, suffixes=("_exact", "_attribution"))
    if merged.empty:
        raise ValueError("attribution and exact tables share no grid cell")
    merged["grid"] = merged["site"] + np.where(merged["by_pos"], " by position",
                                               " all positions")
    fig = px.scatter(merged, x=f"{value}_exact", y=f"{value}_attribution", color="grid",
                     hover_data=[c for c in ("component", "token") if c in merged.columns],
                     labels={f"{value}_exact": f"exact patching ({value})",
                             f"{value}_attribution": f"attribution patching ({value})"})
    lo = float(np.nanmin(merged[[f"{value}_exact", f"{value}_attribution"]].to_numpy()))
    hi = float(np.nanmax(merged[[f"{value}_exact", f"{value}_attribution"]].to_numpy()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(title="Attribution patching vs exact patching")
    return fig


def digit_attribution_figure(table: pd.DataFrame) -> go.Figure:
    """Logit attribution per answer digit (columns) and component (rows), signed colours.

    `table`: the ``schema.MUL_DIGIT_ATTRIBUTION`` table (digit, component, value, ...).
    """
    comps = list(dict.fromkeys(table["component"]))
    digits = sorted(int(d) for d in table["digit"].unique())
    z = np.full((len(comps), len(digits)), np.nan)
    for c, d, v in zip(table["component"], table["digit"], table["value"], strict=True):
        z[comps.index(c), digits.index(int(d))] = v
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = px.imshow(z, x=[f"c{d}" for d in digits], y=comps, aspect="auto",
                    color_continuous_scale=SIGNED_SCALE, zmin=-bound, zmax=bound,
                    text_auto=".2f", labels={"x": "answer digit", "y": "component",
                                             "color": "logit"})
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    fig.update_layout(title="Logit attribution per answer digit (correct − mean digit)",
                      height=max(320, 60 + 22 * len(comps)))
    return fig
