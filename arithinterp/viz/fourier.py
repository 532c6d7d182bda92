"""Fourier features: spectra, an LLM's Fourier fit per layer, and the modular-addition
(grokking) picture: curves on log axes, progress measures, neurons by frequency.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots


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
