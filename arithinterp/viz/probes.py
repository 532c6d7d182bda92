"""Linear probes and representations: probe scores beside their controls, predictions
against truth, cosine similarities and principal components.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots

from arithinterp.components import Component, layer_label
from arithinterp.viz.common import SIGNED_SCALE, unique_labels

PROBE_PANELS = ("score", "shuffled", "random_model", "selectivity")


def probe_scores_figure(
    table: pd.DataFrame, *, target: str, metric: str | None = None, site: str | None = None,
) -> go.Figure:
    """Probe scores of one target by layer (rows) x position, beside its controls.

    Panels (those present and not all NaN): score, shuffled (labels permuted),
    random_model (same probe on a random model), selectivity (score − shuffled). Rows are
    layers, or ``L{layer}H{head}`` for per-head sites. Position labels: the ``label`` or
    ``token`` column.
    """
    df = table[table["target"] == target]
    if site is not None and "site" in df.columns:
        df = df[df["site"] == site]
    if metric is None and "metric" in df.columns:
        metrics = list(dict.fromkeys(df["metric"]))
        metric = next((m for m in ("accuracy", "r2") if m in metrics), metrics[0] if metrics
                      else None)
    if metric is not None and "metric" in df.columns:
        df = df[df["metric"] == metric]
    if df.empty:
        raise ValueError(f"no probe rows for target {target!r}"
                         + (f", site {site!r}" if site else "") + (f", metric {metric!r}"
                                                                     if metric else ""))
    label_col = next((c for c in ("label", "token") if c in df.columns), None)
    has_head = "head" in df.columns and df["head"].notna().any()
    row_of = (lambda r: Component("head", int(r["layer"]), int(r["head"])).name) if has_head \
        else (lambda r: layer_label(r["layer"]))
    df = df.assign(_row=[row_of(r) for _, r in df.iterrows()]).sort_values(
        ["layer", "head", "pos"] if has_head else ["layer", "pos"])
    rows = list(dict.fromkeys(df["_row"]))
    positions = sorted(int(p) for p in df["pos"].unique())
    names = (df.drop_duplicates("pos").set_index("pos")[label_col] if label_col else None)
    cols = unique_labels([str(names[p]) if names is not None else f"p{p}" for p in positions])
    panels = [c for c in PROBE_PANELS if c in df.columns and df[c].notna().any()]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=panels)
    for j, panel in enumerate(panels):
        z = np.full((len(rows), len(positions)), np.nan)
        for r, p, v in zip(df["_row"], df["pos"], df[panel], strict=True):
            z[rows.index(r), positions.index(int(p))] = v
        fig.add_trace(go.Heatmap(
            z=z, x=cols, y=rows, coloraxis="coloraxis2" if panel == "selectivity" else
            "coloraxis", hovertemplate=f"%{{y}} %{{x}}<br>{panel}: %{{z:.3f}}<extra></extra>",
            name=panel), row=1, col=j + 1)
    bounded = metric in ("accuracy", "balanced_accuracy", "r2")
    fig.update_xaxes(type="category", title_text="position")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(
        title=f"Probe {target}" + (f" ({metric})" if metric else "") + (f", {site}" if site
                                                                          else ""),
        coloraxis={"colorscale": "Viridis", "cmin": 0 if bounded else None,
                   "cmax": 1 if bounded else None,
                   "colorbar": {"title": {"text": metric or "score"}, "x": 1.0}},
        coloraxis2={"colorscale": SIGNED_SCALE, "cmid": 0,
                    "colorbar": {"title": {"text": "selectivity"}, "x": 1.08}},
        height=max(280, 100 + 40 * len(rows)))
    return fig


def probe_predictions_figure(
    predictions: pd.DataFrame, *, truth: str, prediction: str, color: str | None = None,
    title: str = "Probe predictions vs truth",
) -> go.Figure:
    """Scatter of a probe's predictions against the true values, with y = x."""
    fig = px.scatter(predictions, x=truth, y=prediction, color=color, opacity=0.6)
    lo = float(np.nanmin(predictions[[truth, prediction]].to_numpy(dtype=float)))
    hi = float(np.nanmax(predictions[[truth, prediction]].to_numpy(dtype=float)))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(title=title)
    return fig


def cosine_figure(cos: Float[np.ndarray, "m n"], y: Sequence[str], x: Sequence[str], *,
                  x_title: str, y_title: str, title: str = "Cosine similarity") -> go.Figure:
    """A [m, n] cosine-similarity table as a heatmap on the fixed scale [-1, 1]."""
    c = np.asarray(cos, dtype=float)
    if c.shape != (len(y), len(x)):
        raise ValueError(f"cosines have shape {c.shape}, labels give {(len(y), len(x))}")
    fig = px.imshow(c, x=list(x), y=list(y), color_continuous_scale=SIGNED_SCALE, zmin=-1,
                    zmax=1, aspect="auto", labels={"x": x_title, "y": y_title,
                                                   "color": "cosine"})
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    fig.update_layout(title=title, height=max(300, 60 + 30 * len(y)))
    return fig


def pca_figure(coords: Float[np.ndarray, "batch k"], explained: Float[np.ndarray, " k"],
               colour: np.ndarray | Sequence, *, colour_title: str,
               hover: Sequence[str] | None = None,
               title: str = "Principal components") -> go.Figure:
    """The first two principal components of some activations, one point per prompt,
    coloured by a target (a category for <= 20 distinct integer values, else a scale)."""
    c = np.asarray(coords, dtype=float)
    if c.ndim != 2 or c.shape[1] < 2 or len(colour) != len(c):
        raise ValueError(f"coords must be [batch, >= 2] with one colour value per row, got "
                         f"{c.shape} and {len(colour)} colours")
    values = np.asarray(colour)
    discrete = np.issubdtype(values.dtype, np.integer) and len(np.unique(values)) <= 20
    df = pd.DataFrame({"PC1": c[:, 0], "PC2": c[:, 1],
                       colour_title: values.astype(str) if discrete else values,
                       "prompt": list(hover) if hover is not None else [""] * len(c)})
    order = {colour_title: [str(v) for v in np.unique(values)]} if discrete else {}
    fig = px.scatter(df, x="PC1", y="PC2", color=colour_title, hover_name="prompt",
                     category_orders=order, opacity=0.8)
    fig.update_layout(title=title, xaxis_title=f"PC1 ({explained[0]:.1%} of variance)",
                      yaxis_title=f"PC2 ({explained[1]:.1%} of variance)", height=420)
    return fig
