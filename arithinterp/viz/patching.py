"""Activation patching: grids (layer x position, layer x head, ...), several sites on one
scale, one cell's spread over prompts, path patching and knockout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from arithinterp.components import head_label, layer_label
from arithinterp.viz.common import SIGNED_SCALE, clickable_heatmap_figure, unique_labels

_AXIS_TITLES = {"layer": "layer", "head": "head", "pos": "position", "component": "component"}


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
