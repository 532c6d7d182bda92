"""Attention: one head's or several heads' patterns on a prompt, the coloured-tokens HTML
view, attention on operand digits by answer digit, and the attention graph as arcs.
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

from arithinterp.viz.common import SIGNED_BLUE, UNSIGNED_SCALE, unique_labels


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
