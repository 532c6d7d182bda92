"""Plotly figure builders shared by the explorer and the notebooks.

Every builder takes tables (the tidy DataFrames a run stores) or tensors and returns a
``go.Figure`` (one, `attention_tokens_html`, a self-contained HTML view); none shows it.
Signed heatmaps use ``RdBu`` centred on 0. Heatmaps a reader may click carry a
near-transparent ``go.Scatter`` of square markers, one per cell (trace 1, ``meta="cells"``),
whose ``customdata`` holds the cell's keys: Plotly heatmaps report no point selections to
Streamlit, scatter points do. This module imports no compute code.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from arithinterp.components import Component, head_label, layer_label

SIGNED_SCALE = "RdBu"
SIGNED_BLUE = "rgb(33,102,172)"  # the blue end of RdBu
UNSIGNED_SCALE = "Blues"
CELLS = "cells"  # meta of the clickable overlay trace
OVERLAY_OPACITY = 0.002  # invisible on flat colours (0.01 shows), still hit by clicks
PATCH_KEYS = ("site", "by_pos", "direction", "layer", "head", "pos")
_AXIS_TITLES = {"layer": "layer", "head": "head", "pos": "position", "component": "component"}


# ---- labels ----------------------------------------------------------------------------------
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


def _key_label(axis: str, value) -> str:
    if axis == "layer":
        return layer_label(value)
    if axis == "head":
        return head_label(value)
    return str(value)


def _axis_labels(df: pd.DataFrame, axis: str) -> tuple[list, list[str]]:
    """Sorted keys of one axis and their display labels (position: the token column)."""
    if axis == "component":
        first = df.drop_duplicates("component").assign(
            _h=lambda d: d["head"].fillna(-1) if "head" in d else -1)
        keys = list(first.sort_values(["layer", "_h"], kind="stable")["component"])
        return keys, unique_labels(keys)
    keys = sorted(int(v) for v in df[axis].dropna().unique())
    if axis == "pos" and "token" in df.columns:
        by_pos = df.dropna(subset=["pos"]).drop_duplicates("pos").set_index("pos")["token"]
        names = [str(by_pos.get(p, f"p{p}")) if pd.notna(by_pos.get(p)) else f"p{p}"
                 for p in keys]
        return keys, unique_labels(names)
    return keys, [_key_label(axis, k) for k in keys]


# ---- training and accuracy -------------------------------------------------------------------
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


# ---- patching --------------------------------------------------------------------------------
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


def patching_figure(
    table: pd.DataFrame, *, rows: str = "layer", cols: str = "pos", value: str = "normalized",
    title: str | None = None, zrange: tuple[float, float] | None = None,
    selected: tuple | None = None, mark_pos: int | None = None, mark_label: str = "metric",
) -> go.Figure:
    """Heatmap of one patching grid (rows x cols: layer x pos, layer x head, head x pos, ...).

    `table`: rows of the ``schema.PATCHING`` table (or ``PatchResult.to_frame()``) for ONE
    grid, i.e. one (site, by_pos, direction), restricted to one layer for head x pos.
    `value`: 'effect' (0 = no change, 1 = the patch moves the metric all the way, in either
    direction), 'normalized' (0 = corrupted run, 1 = clean) or 'value' (the raw metric).
    `zrange` fixes the colour range; `selected` = (row key, col key) outlines that cell;
    `mark_pos` marks the column of that position (where the metric is read).
    Overlay customdata per cell: [row key, col key, value].
    """
    for axis in (rows, cols):
        if axis not in _AXIS_TITLES:
            raise ValueError(f"rows and cols must be among {sorted(_AXIS_TITLES)}, got {axis!r}")
    if value not in table.columns:
        raise ValueError(f"value must be a column of the table, got {value!r}")
    if table.empty:
        raise ValueError("the patching table is empty")
    df, z, (row_keys, row_labels), (col_keys, col_labels) = _grid(table, rows, cols, value)
    ri = {k: i for i, k in enumerate(row_keys)}
    ci = {k: j for j, k in enumerate(col_keys)}
    keys = [[(_py(r), _py(c)) for c in col_keys] for r in row_keys]
    if title is None:
        first = df.iloc[0]
        grid = f"{first['site']}{'' if first.get('by_pos', True) else ' (all positions)'}"
        title = f"{grid}, {first.get('direction', '')}: {rows} × {cols}"
    cell = None
    if selected is not None and selected[0] in ri and selected[1] in ci:
        cell = (ri[selected[0]], ci[selected[1]])
    return clickable_heatmap_figure(
        z, col_labels, row_labels, keys=keys, title=title, x_title=_AXIS_TITLES[cols],
        y_title=_AXIS_TITLES[rows], color_title=value, zrange=zrange, selected=cell,
        mark_col=ci.get(mark_pos) if cols == "pos" else None, mark_label=mark_label)


def _grid(table: pd.DataFrame, rows: str, cols: str, value: str):
    """A tidy grid as a matrix: (rows kept, z [rows x cols], (row keys, labels), (col keys,
    labels)); cells the table lacks are NaN."""
    df = table.dropna(subset=[a for a in (rows, cols) if a != "component"])
    row_keys, row_labels = _axis_labels(df, rows)
    col_keys, col_labels = _axis_labels(df, cols)
    ri = {k: i for i, k in enumerate(row_keys)}
    ci = {k: j for j, k in enumerate(col_keys)}
    z = np.full((len(row_keys), len(col_keys)), np.nan)
    for r, c, v in zip(df[rows], df[cols], df[value], strict=True):
        z[ri[r if rows == "component" else int(r)], ci[c if cols == "component" else int(c)]] = v
    return df, z, (row_keys, row_labels), (col_keys, col_labels)


def patching_panels_figure(
    table: pd.DataFrame, sites: Sequence[str], *, rows: str, cols: str,
    value: str = "effect", zrange: tuple[float, float] | None = None, title: str = "",
) -> go.Figure:
    """Several sites' grids side by side on ONE colour scale, like TransformerLens's
    `get_act_patch_block_every` (resid_pre / attn_out / mlp_out by layer x position) or every
    head site (z / q / k / v / pattern by layer x head). `table`: one direction's rows;
    `zrange` defaults to symmetric around 0 over all the panels."""
    if not sites:
        raise ValueError("sites is empty: name at least one patching site to draw")
    grids = []
    for site in sites:
        part = table[table["site"] == site]
        if part.empty:
            raise ValueError(f"the table has no rows for site {site!r} (sites: "
                             f"{sorted(set(table['site']))})")
        grids.append(_grid(part, rows, cols, value))
    if zrange is None:
        bound = max(float(np.nanmax(np.abs(g[1]))) if np.isfinite(g[1]).any() else 0.0
                    for g in grids) or 1.0
        zrange = (-bound, bound)
    fig = make_subplots(rows=1, cols=len(sites), subplot_titles=list(sites),
                        shared_yaxes=True, horizontal_spacing=0.03)
    for j, (_, z, (_, row_labels), (_, col_labels)) in enumerate(grids, start=1):
        fig.add_trace(go.Heatmap(z=z, x=col_labels, y=row_labels, coloraxis="coloraxis",
                                 hovertemplate=f"{_AXIS_TITLES[rows]} %{{y}}<br>"
                                               f"{_AXIS_TITLES[cols]} %{{x}}<br>{value} "
                                               "%{z:.4g}<extra></extra>"), row=1, col=j)
        fig.update_xaxes(type="category", title_text=_AXIS_TITLES[cols], row=1, col=j)
    fig.update_yaxes(type="category", autorange="reversed", title_text=_AXIS_TITLES[rows],
                     row=1, col=1)
    fig.update_layout(title=title, height=max(260, 80 + 42 * len(grids[0][2][1])),
                      coloraxis={"colorscale": SIGNED_SCALE, "cmin": zrange[0],
                                 "cmax": zrange[1],
                                 "colorbar": {"title": f"{value}<br>[{zrange[0]:.3g}, "
                                                       f"{zrange[1]:.3g}]"}})
    return fig


def _py(v):
    """numpy scalars to plain Python (customdata goes through JSON)."""
    return v.item() if hasattr(v, "item") else v


def effect_distribution_figure(
    values: Float[Tensor, " batch"] | Float[np.ndarray, " batch"], *,
    clean: float | None = None, corrupted: float | None = None, title: str = "",
    x_title: str = "patched metric",
) -> go.Figure:
    """Histogram of one cell's per-prompt patched metric, with the unpatched baselines."""
    v = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=float)
    fig = go.Figure(go.Histogram(x=v, nbinsx=min(40, max(5, len(v) // 2)), name="prompts"))
    fig.add_vline(x=float(v.mean()), line_dash="solid", line_color="black",
                  annotation_text="mean", annotation_position="top")
    for name, x, color in (("clean", clean, "royalblue"), ("corrupted", corrupted, "firebrick")):
        if x is not None:
            fig.add_vline(x=x, line_dash="dash", line_color=color, annotation_text=name,
                          annotation_position="top left" if name == "corrupted" else "top right")
    fig.update_layout(title=title or "Effect over prompts", xaxis_title=x_title,
                      yaxis_title="prompts", bargap=0.05, showlegend=False, height=320)
    return fig


# ---- attribution -----------------------------------------------------------------------------
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


def paths_figure(paths: pd.DataFrame, *, value: str = "normalized") -> go.Figure:
    """Path patching: effect of each sender, grouped by receiver (logits, or a head's q/k/v)."""
    df = paths.copy()
    inp = df["receiver_input"].fillna("") if "receiver_input" in df else ""
    df["path to"] = df["receiver"] + np.where(inp != "", "." + inp, "")
    fig = px.bar(df, x="sender", y=value, color="path to", barmode="group",
                 category_orders={"sender": list(dict.fromkeys(df["sender"]))})
    fig.update_layout(title=f"Path patching ({value})", xaxis_type="category")
    return fig


def knockout_figure(knockout: pd.DataFrame) -> go.Figure:
    """Exact match and metric drop after knocking out the selected components vs random sets
    of the same size; each bar names the components it knocked out."""
    panels = [("exact_match", "exact match")]
    if "metric_drop" in knockout.columns:
        panels.append(("metric_drop", "metric drop (margin lost)"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels])
    names = knockout["components"].fillna("").replace("", "(none)") \
        if "components" in knockout.columns else None
    for j, (col, label) in enumerate(panels, start=1):
        fig.add_trace(go.Bar(x=knockout["condition"], y=knockout[col], name=label,
                             text=names, textposition="inside", insidetextanchor="start",
                             textangle=-90, hovertext=names, showlegend=False), row=1, col=j)
        fig.update_xaxes(type="category", title_text="condition", row=1, col=j)
        fig.update_yaxes(title_text=label, row=1, col=j)
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    fig.update_layout(title="Knockout: the selection against random sets of the same size",
                      height=380)
    return fig


# ---- neurons ---------------------------------------------------------------------------------
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


# ---- attention -------------------------------------------------------------------------------
def attention_pattern_figure(
    pattern: Float[Tensor, "query_pos key_pos"] | Float[np.ndarray, "query_pos key_pos"],
    labels: Sequence[str], *, title: str = "Attention pattern", mark_query: int | None = None,
    mark_label: str = "metric",
) -> go.Figure:
    """One head's attention on one prompt: queries (rows) x keys (columns), rows sum to 1;
    `mark_query` outlines that query row (e.g. the position a metric is read at)."""
    p = np.asarray(pattern.detach().cpu() if isinstance(pattern, Tensor) else pattern,
                   dtype=float)
    labels = unique_labels(labels)
    if p.shape != (len(labels), len(labels)):
        raise ValueError(f"pattern has shape {p.shape} but there are {len(labels)} labels")
    masked = np.where(np.triu(np.ones_like(p, dtype=bool), k=1), np.nan, p)  # causal mask
    fig = px.imshow(masked, x=labels, y=labels, color_continuous_scale=UNSIGNED_SCALE,
                    zmin=0, zmax=1, aspect="auto",
                    labels={"x": "key", "y": "query", "color": "attention"})
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(type="category")
    fig.update_layout(title=title, height=max(320, 40 + 28 * len(labels)))
    if mark_query is not None and 0 <= mark_query < len(labels):
        fig.add_hline(y=mark_query, line_dash="dash", line_color="black", line_width=1.5,
                      annotation_text=mark_label, annotation_position="right")
    return fig


def attention_heads_figure(
    patterns: Float[np.ndarray, "head query_pos key_pos"], labels: Sequence[str],
    head_names: Sequence[str], *, title: str = "Attention patterns",
    mark_query: int | None = None,
) -> go.Figure:
    """Several heads' patterns side by side on one [0, 1] scale (queries rows, keys columns,
    causal mask blank); `mark_query` marks that query row in every panel."""
    p = np.asarray(patterns, dtype=float)
    labels = unique_labels(labels)
    if p.shape[0] != len(head_names) or p.shape[1:] != (len(labels), len(labels)):
        raise ValueError(f"patterns have shape {p.shape}: expected ({len(head_names)}, "
                         f"{len(labels)}, {len(labels)}) for the heads and labels given")
    fig = make_subplots(rows=1, cols=len(head_names), subplot_titles=list(head_names),
                        shared_yaxes=True, horizontal_spacing=0.02)
    mask = np.triu(np.ones(p.shape[1:], dtype=bool), k=1)
    for j, pattern in enumerate(p, start=1):
        fig.add_trace(go.Heatmap(z=np.where(mask, np.nan, pattern), x=labels, y=labels,
                                 coloraxis="coloraxis",
                                 hovertemplate="query %{y}<br>key %{x}<br>attention %{z:.3f}"
                                               "<extra></extra>"), row=1, col=j)
        fig.update_xaxes(type="category", tickangle=-45, row=1, col=j)
        if mark_query is not None and 0 <= mark_query < len(labels):
            fig.add_hline(y=mark_query, line_dash="dash", line_color="black", line_width=1,
                          row=1, col=j)
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(title=title, coloraxis={"colorscale": UNSIGNED_SCALE, "cmin": 0,
                                              "cmax": 1, "colorbar": {"title": "attention"}},
                      height=max(320, 80 + 24 * len(labels)))
    return fig


TOKENS_VIEW_ID = "attention-tokens"  # the root element of `attention_tokens_html`
_TOKENS_TEMPLATE = """<div id="%(root)s" style="font-family:sans-serif;font-size:14px">
<div style="margin-bottom:6px"><b>%(title)s</b></div>
<div style="margin-bottom:6px">Head: <span class="heads"></span></div>
<div style="margin-bottom:6px">Colour each token by the attention
<label><input type="radio" name="mode" value="from" checked> the hovered token pays to it
</label><label><input type="radio" name="mode" value="to"> it pays to the hovered token
</label></div>
<div class="tokens" style="line-height:2.2"></div>
<div class="readout" style="margin-top:6px;min-height:1.4em;color:#333">Hover a token (click
to pin it).</div></div>
<script>
(function() {
  const D = %(data)s;
  const root = document.getElementById("%(root)s");
  const heads = root.querySelector(".heads"), row = root.querySelector(".tokens");
  const readout = root.querySelector(".readout");
  let head = D.head, pinned = null;
  const spans = D.tokens.map((t, i) => {
    const s = document.createElement("span");
    s.textContent = t; s.dataset.pos = i; s.className = "token";
    s.style.cssText = "padding:3px 5px;margin:1px;border:1px solid #ccc;border-radius:3px;"
      + "cursor:pointer;white-space:pre" + (i === D.mark ? ";outline:2px dashed black" : "");
    s.addEventListener("mouseenter", () => { if (pinned === null) show(i); });
    s.addEventListener("click", () => { pinned = pinned === i ? null : i; show(i); });
    row.appendChild(s); return s;
  });
  D.heads.forEach((name, h) => {
    const b = document.createElement("button");
    b.textContent = name; b.dataset.head = h; b.className = "head";
    b.addEventListener("click", () => { head = h; paint(); show(pinned); });
    heads.appendChild(b);
  });
  root.querySelectorAll("input[name=mode]").forEach(r => r.addEventListener("change",
    () => show(pinned)));
  function paint() {
    heads.querySelectorAll("button").forEach((b, h) =>
      b.style.fontWeight = h === head ? "bold" : "normal");
  }
  function show(i) {
    if (i === null) return;
    const from = root.querySelector("input[name=mode]:checked").value === "from";
    const P = D.patterns[head], n = D.tokens.length, ranked = [];
    for (let j = 0; j < n; j++) {
      const v = from ? P[i][j] : P[j][i];
      spans[j].dataset.attention = v.toFixed(4);
      spans[j].style.background = "rgba(33,102,172," + v.toFixed(3) + ")";
      spans[j].style.color = v > 0.5 ? "white" : "black";
      spans[j].title = (from ? D.tokens[i] + " \u2192 " + D.tokens[j] : D.tokens[j]
        + " \u2192 " + D.tokens[i]) + ": " + v.toFixed(3);
      if (j !== i || from) ranked.push([v, j]);
    }
    spans.forEach((s, j) => s.style.borderColor = j === i ? "black" : "#ccc");
    ranked.sort((x, y) => y[0] - x[0]);
    readout.textContent = D.heads[head] + (from ? ": " + D.tokens[i] + " attends to "
      : ": attending to " + D.tokens[i] + ": ") + ranked.slice(0, 3).filter(r => r[0] > 0)
      .map(r => D.tokens[r[1]] + " " + r[0].toFixed(2)).join(", ");
  }
  paint();
  if (D.mark !== null) show(D.mark);
})();
</script>"""


def attention_tokens_html(
    patterns: Float[np.ndarray, "head query_pos key_pos"], labels: Sequence[str],
    head_names: Sequence[str], *, title: str = "Attention on the tokens",
    mark_query: int | None = None, head: int = 0,
) -> str:
    """A self-contained HTML view in the manner of CircuitsVis's coloured tokens (no network):
    the prompt's tokens in a row; hovering one (a click pins it) colours every token by the
    chosen head's attention from the hovered token to it, or, switched, from it to the hovered
    token; the three strongest are written out. `mark_query` (e.g. the metric's position) is
    outlined and shown first, with head
    `head`. Each token's span carries its value in ``data-attention``."""
    p = np.asarray(patterns, dtype=float)
    labels = [str(x) for x in labels]
    if p.ndim != 3 or p.shape[0] != len(head_names) or p.shape[1:] != (len(labels),) * 2:
        raise ValueError(f"patterns have shape {p.shape}: expected ({len(head_names)}, "
                         f"{len(labels)}, {len(labels)}) for the heads and labels given")
    mark = mark_query if mark_query is not None and 0 <= mark_query < len(labels) else None
    data = json.dumps({"tokens": labels, "heads": [str(h) for h in head_names],
                       "patterns": np.round(np.nan_to_num(p), 4).tolist(), "mark": mark,
                       "head": head if 0 <= head < len(head_names) else 0})
    return _TOKENS_TEMPLATE % {"root": TOKENS_VIEW_ID, "title": html.escape(title),
                               "data": data.replace("</", "<\\/")}


def llm_fourier_figure(table: pd.DataFrame) -> go.Figure:
    """Median R² of the Fourier fit per layer (residual stream grouped by digit) against the
    same tables with shuffled rows, with the embedding's and unembedding's as flat lines."""
    acts = table[table["source"] == "resid_post"].sort_values("layer")
    fig = go.Figure([
        go.Scatter(x=acts["layer"], y=acts["median_r2"], mode="lines+markers",
                   name="residual stream"),
        go.Scatter(x=acts["layer"], y=acts["shuffled_r2"], mode="lines", name="shuffled rows",
                   line={"dash": "dot", "color": "grey"}),
    ])
    for row in table[table["source"] != "resid_post"].itertuples():
        fig.add_hline(y=row.median_r2, line_dash="dash", annotation_text=str(row.source),
                      line_color="black", line_width=1)
    freqs = table["freqs"].iloc[0] if len(table) else ""
    fig.update_layout(title=f"Fourier fit with frequencies {{{freqs}}} over the ten digits",
                      xaxis_title="layer", yaxis_title="median R²", yaxis_range=[0, 1])
    return fig


def operand_attention_figure(table: pd.DataFrame, *, value: str = "attention") -> go.Figure:
    """Attention of each head (rows) on each operand digit (columns), one panel per answer digit.

    `table`: the ``schema.OPERAND_ATTENTION`` table (component, digit, key, attention, ...).
    """
    comps = list(dict.fromkeys(table.sort_values(["layer", "head"])["component"]))
    keys = list(dict.fromkeys(table["key"]))
    digits = sorted(table["digit"].unique())
    fig = make_subplots(rows=1, cols=len(digits), shared_yaxes=True, horizontal_spacing=0.02,
                        subplot_titles=[f"writing c{int(d)}" for d in digits])
    for j, d in enumerate(digits):
        g = table[table["digit"] == d]
        z = np.full((len(comps), len(keys)), np.nan)
        for c, k, v in zip(g["component"], g["key"], g[value], strict=True):
            z[comps.index(c), keys.index(k)] = v
        fig.add_trace(go.Heatmap(z=z, x=keys, y=comps, coloraxis="coloraxis",
                                 text=np.round(z, 2), texttemplate="%{text}",
                                 hovertemplate="%{y} → %{x}: %{z:.3f}<extra>c"
                                 f"{int(d)}</extra>"), row=1, col=j + 1)
    fig.update_xaxes(type="category", title_text="key")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(title="Attention on operand digits by answer digit",
                      coloraxis={"colorscale": UNSIGNED_SCALE, "cmin": 0, "cmax": 1,
                                 "colorbar": {"title": {"text": value}}},
                      height=max(300, 80 + 26 * len(comps)))
    return fig


# ---- probes and Fourier ----------------------------------------------------------------------
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


def fourier_spectrum_figure(
    spectrum: pd.DataFrame, *, frequency: str, value: str, color: str | None = None,
    title: str = "Fourier spectrum",
) -> go.Figure:
    """Bars of `value` (power, norm, ...) per Fourier `frequency`, grouped by `color`."""
    df = spectrum.copy()
    df[frequency] = df[frequency].astype(str)
    if color is not None:
        df[color] = df[color].astype(str)  # discrete groups, even for numeric columns
    fig = px.bar(df, x=frequency, y=value, color=color, barmode="group",
                 category_orders={frequency: list(dict.fromkeys(df[frequency]))})
    fig.update_xaxes(type="category")
    fig.update_layout(title=title)
    return fig


# ---- multiplication --------------------------------------------------------------------------
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


def attention_graph_figure(edges: pd.DataFrame, labels: Sequence[str], *,
                           title: str = "Attention graph") -> go.Figure:
    """Positions on a line and an arc from each key to each query it attends to; arc width
    and opacity grow with the attention (edges: key_pos, query_pos, attention)."""
    labels = unique_labels(labels)
    n = len(labels)
    fig = go.Figure(go.Scatter(x=list(range(n)), y=[0] * n, mode="markers+text",
                               text=labels, textposition="bottom center",
                               marker={"size": 10, "color": "black"}, hoverinfo="text",
                               showlegend=False))
    for e in edges.itertuples():
        k, q, w = int(e.key_pos), int(e.query_pos), float(e.attention)
        if k == q:
            continue  # self-attention: no arc
        t = np.linspace(0, 1, 24)
        x = k + (q - k) * t
        y = np.sin(np.pi * t) * (q - k) / 2
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", showlegend=False,
                                 line={"width": 1 + 5 * w, "color": SIGNED_BLUE},
                                 opacity=min(1.0, 0.25 + w),
                                 hovertemplate=f"{labels[k]} → {labels[q]}: {w:.2f}"
                                               "<extra></extra>"))
    fig.update_xaxes(visible=False, range=[-1, n])
    fig.update_yaxes(visible=False, scaleanchor=None)
    fig.update_layout(title=title, height=360, plot_bgcolor="white")
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


# ---- fine-tuning -----------------------------------------------------------------------------
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


# ---- modular arithmetic (grokking) -----------------------------------------------------------
SPLIT_COLORS = {"train": "#1f77b4", "test": "#d62728"}
LOGIT_DASH = {"full": "solid", "restricted": "dash", "excluded": "dot"}


def _mark_steps(fig: go.Figure, marks: dict[str, int | None]) -> None:
    for text, step in marks.items():
        if step:  # a log axis has no 0
            fig.add_vline(x=step, line={"dash": "dot", "color": "grey"}, annotation_text=text,
                          annotation_position="top left")


def grokking_curves_figure(curve: pd.DataFrame, *,
                           marks: dict[str, int | None] | None = None) -> go.Figure:
    """Train and test accuracy (left) and loss (right) over training on log-scaled steps (and
    log-scaled loss): memorization, then generalization thousands of steps later.

    `curve`: the ``schema.TRAINING_CURVE`` table of a one-digit (modular) task: ``loss`` is
    the training loss, ``digit_loss`` the test loss, ``train_exact_match`` and ``exact_match``
    the accuracies. `marks`: vertical lines, e.g. {"memorized": 300, "generalized": 9000}."""
    df = curve.drop_duplicates("step").sort_values("step")
    df = df[df["step"] > 0]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["accuracy", "loss"],
                        horizontal_spacing=0.08)
    for split, acc, loss in (("train", "train_exact_match", "loss"),
                             ("test", "exact_match", "digit_loss")):
        color = SPLIT_COLORS[split]
        if acc in df and df[acc].notna().any():
            fig.add_trace(go.Scatter(x=df["step"], y=df[acc], name=f"{split} accuracy",
                                     line={"color": color}), row=1, col=1)
        fig.add_trace(go.Scatter(x=df["step"], y=df[loss], name=f"{split} loss",
                                 line={"color": color, "dash": "dash"}), row=1, col=2)
    _mark_steps(fig, marks or {})
    fig.update_xaxes(type="log", title_text="step (log)")
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(title="Grokking: train and test accuracy and loss", height=380)
    return fig


def progress_figure(progress: pd.DataFrame, *, marks: dict[str, int | None] | None = None
                    ) -> go.Figure:
    """Nanda et al.'s progress measures over training snapshots: full, restricted (key
    frequencies only) and excluded (key frequencies removed) loss on train and test (left,
    log loss), and the Gini sparsity of W_E's and W_L's Fourier norms with the key
    frequencies' share of the logits (right).

    `progress`: the ``schema.MOD_PROGRESS`` table."""
    df = progress.sort_values("step")
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "sparsity and key share"],
                        horizontal_spacing=0.08)
    for (kind, split), g in df.groupby(["logits", "split"], sort=False):
        fig.add_trace(go.Scatter(x=g["step"], y=g["loss"], name=f"{kind} ({split})",
                                 line={"color": SPLIT_COLORS.get(split),
                                       "dash": LOGIT_DASH.get(kind)}), row=1, col=1)
    once = df.drop_duplicates("step")
    for column, color in (("gini_embedding", "#2ca02c"), ("gini_neuron_logit", "#9467bd"),
                          ("key_fraction", "#ff7f0e")):
        fig.add_trace(go.Scatter(x=once["step"], y=once[column], name=column.replace("_", " "),
                                 line={"color": color}), row=1, col=2)
    _mark_steps(fig, marks or {})
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(title="Progress measures over training", height=400)
    return fig


def neuron_frequencies_figure(neurons: pd.DataFrame) -> go.Figure:
    """How many MLP neurons have each best frequency (key frequencies coloured), and the
    variance that frequency explains in each (hover)."""
    df = neurons.dropna(subset=["fve"])
    counts = (df.groupby(["frequency", "key"]).agg(neurons=("neuron", "size"),
                                                   median_fve=("fve", "median"))
              .reset_index())
    counts["frequency"] = counts["frequency"].astype(str)
    counts["key"] = counts["key"].map({True: "key", False: "other"})
    fig = px.bar(counts, x="frequency", y="neurons", color="key", hover_data=["median_fve"],
                 color_discrete_map={"key": "#d62728", "other": "#7f7f7f"})
    fig.update_xaxes(type="category", title_text="the neuron's best frequency k")
    fig.update_layout(title="MLP neurons by frequency (hover: median variance explained)",
                      height=340)
    return fig


# ---- sweeps --------------------------------------------------------------------------------
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
