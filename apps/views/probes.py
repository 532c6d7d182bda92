"""Probes and Fourier features: probe scores by layer × position with their controls,
probe predictions vs truth (e.g. running sums), Fourier spectra."""

import common
import pandas as pd
import streamlit as st

from arithinterp import schema
from arithinterp.components import layer_label
from arithinterp.probes.geometry import direction_cosines, pca_projection
from arithinterp.viz.fourier import fourier_spectrum_figure
from arithinterp.viz.probes import (
    cosine_figure,
    pca_figure,
    probe_predictions_figure,
    probe_scores_figure,
)

# columns that together name one spectrum (e.g. W_E, or activations at resid_post L1 of a0)
TABLE_ID = ("source", "site", "layer", "label", "grouped_by")
VALUES = ("fraction", "fraction_centered", "power")


def _id_part(column: str, value) -> str:
    return layer_label(value) if column == "layer" else str(value)


def pick(df: pd.DataFrame, column: str, label: str, key: str) -> pd.DataFrame:
    options = list(dict.fromkeys(df[column].dropna()))
    if len(options) <= 1:
        return df
    choice = st.selectbox(label, options, key=key)
    return df[df[column] == choice]


run = common.current_run()
st.title("Probes and Fourier features")

sweeps = common.stages_of(run, schema.PROBES)
st.subheader("Probe scores")
stage = None
if not sweeps:
    st.info(common.missing_message(run, f"{schema.PROBES}/"))
else:
    stage = st.selectbox("Probe sweep", sweeps, key="probes_table") if len(sweeps) > 1 \
        else sweeps[0]
    df = common.read(run, schema.PROBE_SCORES, stage)
    if df is not None and len(df):
        c1, c2, c3 = st.columns(3)
        with c1:
            target = st.selectbox("Target", list(dict.fromkeys(df["target"])),
                                  key="probes_target")
        df = df[df["target"] == target]
        with c2:
            site = None
            if df["site"].nunique() > 1:
                site = st.selectbox("Site", list(dict.fromkeys(df["site"])), key="probes_site")
        with c3:
            metric = None
            if df["metric"].nunique() > 1:
                metric = st.selectbox("Metric", list(dict.fromkeys(df["metric"])),
                                      key="probes_metric")
        common.chart(st, probe_scores_figure(df, target=target, metric=metric, site=site),
                        key="probes_scores")
        st.caption("score: held-out probe score; shuffled: the same probe on permuted labels; "
                   "random_model: on a randomly initialised model; selectivity: score − "
                   "shuffled.")
        summary = common.read(run, schema.PROBE_SUMMARY, stage, quiet=True)
        if summary is not None:
            with st.expander("Summary: best probe per target"):
                st.dataframe(summary, hide_index=True)

st.subheader("Probe weights")
stored = common.read(run, schema.PROBE_WEIGHTS, stage, quiet=True) if stage else None
probes = sorted(k.removesuffix(".coef") for k in (stored[0] if stored else {})
                if k.endswith(".coef") and stored[0][k].shape[0] > 1)
if not probes:
    st.info(f"Run **{run.name}** stores no multi-class probe weights in "
            f"`{stage or schema.PROBES}`.")
else:
    weights = stored[0]
    loaded = common.model_of(run)
    chosen_target = st.session_state.get("probes_target")  # the scores' target, if picked
    probe = st.selectbox("Probe (target.site.layer.position)", probes, key="probes_weights",
                         index=next((i for i, p in enumerate(probes)
                                     if p.startswith(f"{chosen_target}.")), 0))
    coef, classes = weights[f"{probe}.coef"], weights[f"{probe}.classes"]
    names = [str(int(c)) for c in classes]
    left, right = st.columns(2)
    with left:
        common.chart(st, cosine_figure(
            direction_cosines(coef, coef), names, names, x_title="class", y_title="class",
            title=f"{probe}: cosine between class directions"), key="probes_weights_self")
    with right:
        if loaded is not None and coef.shape[1] == loaded.model.cfg.d_model:
            digit_ids = loaded.task.vocab.digit_ids()
            W_U = loaded.model.W_U.detach()[:, digit_ids].T
            common.chart(st, cosine_figure(
                direction_cosines(coef, W_U), names, [str(d) for d in range(len(digit_ids))],
                x_title="unembedding of digit", y_title="class",
                title=f"{probe}: class directions vs the digits' unembedding"),
                key="probes_weights_unembed")
    st.caption("Each row of a probe's weights (in activation space, the scaler folded in) is "
               "the direction whose dot product is that class's logit. Cosines near ±1 "
               "between classes mean shared directions; against the unembedding, whether the "
               "probe reads digits the way the model writes them.")

st.subheader("Probe predictions vs truth")
preds = common.read(run, schema.PROBE_PREDICTIONS, stage, quiet=True) if stage else None
if preds is None or preds.empty:
    st.info(f"Run **{run.name}** has no regression probe predictions (e.g. running sums) in "
            f"`{stage or schema.PROBES}`.")
else:
    for col, label in (("target", "Target"), ("layer", "Layer"), ("pos", "Position")):
        preds = pick(preds, col, label, f"probes_pred_{col}")
    common.chart(st, probe_predictions_figure(preds, truth="truth", prediction="prediction",
                                             title=f"{stage}: prediction vs truth"),
                    key="probes_predictions")

st.subheader("Residual stream: principal components")
experiments = schema.experiments(run.manifest["stages"], schema.LOCALIZE)
cache = None
if experiments:
    exp = st.selectbox("Cached activations of experiment", experiments, key="pca_experiment") \
        if len(experiments) > 1 else experiments[0]
    loc = f"{schema.LOCALIZE}/{exp}"
    cache = common.read(run, schema.ACTIVATION_CACHE, loc, quiet=True)
    pairs = common.read(run, schema.PAIRS, loc, quiet=True)
    task = common.task_of(run, loc)
if cache is None or pairs is None or task is None:
    st.info(f"Run **{run.name}** has no cached activations: a localization with save_cache "
            "(the default) stores them (`arithinterp localize`).")
else:
    arrays = cache[0]
    hooks = [h for h in arrays if arrays[h].ndim == 3]  # [batch pos d_model] residual sites
    labels = task.position_labels()
    c1, c2, c3 = st.columns(3)
    hook = c1.selectbox("Activation", hooks, key="pca_hook")
    pos = c2.selectbox("Position", range(arrays[hook].shape[1]), key="pca_pos",
                       index=min(len(labels), arrays[hook].shape[1]) - 1,
                       format_func=lambda p: labels[p] if p < len(labels) else f"p{p}")
    clean = schema.pair_keys("clean")
    a, b = pairs[0][clean["a"]], pairs[0][clean["b"]]
    targets = common.probe_targets(common.task_key(task), tuple(int(x) for x in a),
                                   tuple(int(x) for x in b))
    target = c3.selectbox("Colour by", list(targets), key="pca_target")
    coords, explained = pca_projection(arrays[hook][:, pos], k=2)
    common.chart(st, pca_figure(
        coords, explained, targets[target], colour_title=target,
        hover=[task.display(int(x), int(y)) for x, y in zip(a, b, strict=True)],
        title=f"{hook} at {labels[pos] if pos < len(labels) else pos}: the clean prompts of "
              f"{exp}, coloured by {target}"), key="pca_scatter")
    st.caption(f"{len(a)} clean prompts of the localization's minimal pairs, activations the "
               "run cached; PCA of the centred activations at one position.")

st.subheader("Fourier spectra")
spectrum = common.read(run, schema.FOURIER_SPECTRUM, schema.FOURIER)
if spectrum is not None and len(spectrum):
    df = spectrum.copy()
    power = st.radio("Value", VALUES, horizontal=True, key="fourier_value")
    df["table"] = [" ".join(_id_part(c, v) for c, v in zip(TABLE_ID, row, strict=True)
                            if v is not None and pd.notna(v))
                   for row in df[list(TABLE_ID)].itertuples(index=False)]
    options = list(dict.fromkeys(df["table"]))
    chosen = st.multiselect("Tables", options, default=options[:3], key="fourier_tables",
                            help="W_E / W_U: the digit rows of the (un)embedding; "
                                 "activations: mean activation per digit value")
    if chosen:
        common.chart(st, fourier_spectrum_figure(
            df[df["table"].isin(chosen)], frequency="frequency", value=power, color="table",
            title=f"Fourier spectrum ({power})"), key="fourier_spectrum")
    r2 = common.read(run, schema.FOURIER_R2, schema.FOURIER, quiet=True)
    if r2 is not None:
        with st.expander("R² of the frequency set, per table"):
            st.dataframe(r2, hide_index=True)
