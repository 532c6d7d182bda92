"""Probes and Fourier features: probe scores by layer × position with their controls,
probe predictions vs truth (e.g. running sums), Fourier spectra.

The tables are read defensively: any `probes/*.parquet` with target, layer, pos and score
columns is a score table; one with a truth and a prediction column is a predictions table;
any `fourier/*.parquet` with a frequency and a value column is a spectrum.
"""

import common
import pandas as pd
import streamlit as st

from arithinterp import viz

TRUTH = ("truth", "true", "y_true", "target_value", "actual", "label_value")
PREDICTION = ("prediction", "pred", "y_pred", "predicted")
FREQUENCY = ("frequency", "freq", "k")
POWER = ("fraction", "fraction_centered", "power", "energy", "magnitude", "norm", "amplitude",
         "value", "score")
# columns that together name one spectrum (e.g. W_E, or activations at resid_post L1 of a0)
TABLE_ID = ("source", "site", "layer", "label", "grouped_by", "target", "component", "name")


def first(columns, names) -> str | None:
    return next((n for n in names if n in columns), None)


def _id_part(column: str, value) -> str:
    return f"L{int(value)}" if column == "layer" else str(value)


def pick(df: pd.DataFrame, column: str, label: str, key: str) -> pd.DataFrame:
    options = list(dict.fromkeys(df[column].dropna()))
    if len(options) <= 1:
        return df
    choice = st.selectbox(label, options, key=key)
    return df[df[column] == choice]


run = common.current_run()
st.title("Probes and Fourier features")

probes = common.tables_under(run, "probes")
scores = {n: t for n, t in probes.items() if {"target", "layer", "pos", "score"} <= set(t)}
preds = {n: t for n, t in probes.items()
         if first(t.columns, TRUTH) and first(t.columns, PREDICTION)}

st.subheader("Probe scores")
if not scores:
    st.info(common.missing_message(run, "probes/*.parquet") if not probes else
            f"Run **{run.name}** has probe tables ({', '.join(probes)}) but none with "
            "target, layer, pos and score columns.")
else:
    name = st.selectbox("Table", list(scores), key="probes_table") if len(scores) > 1 \
        else next(iter(scores))
    df = scores[name]
    c1, c2, c3 = st.columns(3)
    with c1:
        target = st.selectbox("Target", list(dict.fromkeys(df["target"])), key="probes_target")
    df = df[df["target"] == target]
    with c2:
        site = None
        if "site" in df.columns and df["site"].nunique() > 1:
            site = st.selectbox("Site", list(dict.fromkeys(df["site"])), key="probes_site")
    with c3:
        metric = None
        if "metric" in df.columns and df["metric"].nunique() > 1:
            metric = st.selectbox("Metric", list(dict.fromkeys(df["metric"])),
                                  key="probes_metric")
    try:
        st.plotly_chart(viz.probe_scores_figure(df, target=target, metric=metric, site=site),
                        key="probes_scores")
        st.caption("score: held-out probe score; shuffled: the same probe on permuted labels; "
                   "random_model: on a randomly initialised model; selectivity: score − "
                   "shuffled.")
    except (ValueError, KeyError) as e:
        st.error(f"Cannot draw probe table {name}: {e}")
    for other, t in probes.items():
        if other not in scores and other not in preds:
            with st.expander(f"Table {other}"):
                st.dataframe(t, hide_index=True)

st.subheader("Probe predictions vs truth")
if not preds:
    st.info(f"Run **{run.name}** has no probe predictions (e.g. running sums) in `probes/`.")
else:
    name = st.selectbox("Predictions", list(preds), key="probes_predictions_table") \
        if len(preds) > 1 else next(iter(preds))
    df = preds[name]
    for col, label in (("target", "Target"), ("layer", "Layer"), ("pos", "Position")):
        if col in df.columns:
            df = pick(df, col, label, f"probes_pred_{col}")
    truth, prediction = first(df.columns, TRUTH), first(df.columns, PREDICTION)
    st.plotly_chart(viz.probe_predictions_figure(df, truth=truth, prediction=prediction,
                                                 title=f"{name}: prediction vs truth"),
                    key="probes_predictions")

st.subheader("Fourier spectra")
fourier = common.tables_under(run, "fourier")
spectra = {n: t for n, t in fourier.items()
           if first(t.columns, FREQUENCY) and first(t.columns, POWER)}
if not spectra:
    st.info(common.missing_message(run, "fourier/*.parquet") if not fourier else
            f"Run **{run.name}** has Fourier tables ({', '.join(fourier)}) but none with a "
            "frequency and a power column.")
else:
    name = st.selectbox("Spectrum", list(spectra), key="fourier_table") if len(spectra) > 1 \
        else next(iter(spectra))
    df = spectra[name].copy()
    freq = first(df.columns, FREQUENCY)
    values = [c for c in POWER if c in df.columns]
    power = st.radio("Value", values, horizontal=True, key="fourier_value") \
        if len(values) > 1 else values[0]
    ids = [c for c in TABLE_ID if c in df.columns and c not in (freq, power)]
    df["table"] = [" ".join(dict.fromkeys(_id_part(c, v) for c, v in zip(ids, row, strict=True)
                                          if v is not None and pd.notna(v))) or name
                   for row in df[ids].itertuples(index=False)] if ids else name
    options = list(dict.fromkeys(df["table"]))
    chosen = st.multiselect("Tables", options, default=options[:3], key="fourier_tables",
                            help="W_E / W_U: the digit rows of the (un)embedding; "
                                 "activations: mean activation per digit value")
    if chosen:
        st.plotly_chart(viz.fourier_spectrum_figure(
            df[df["table"].isin(chosen)], frequency=freq, value=power, color="table",
            title=f"Fourier spectrum ({power})"), key="fourier_spectrum")
for other, t in fourier.items():
    if other not in spectra:
        with st.expander(f"Table {other}"):
            st.dataframe(t, hide_index=True)
