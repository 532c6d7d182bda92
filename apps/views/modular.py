"""Modular arithmetic: grokking and the Fourier algorithm (Nanda et al. 2023). Train and test
curves on log axes, the logit and embedding spectra with the key frequencies marked, the
progress measures over training, full/restricted/excluded loss, neurons by frequency, and the
Fourier probes."""

import common
import streamlit as st

from arithinterp import schema
from arithinterp.viz.fourier import (
    fourier_spectrum_figure,
    grokking_curves_figure,
    neuron_frequencies_figure,
    progress_figure,
)

run = common.current_run()
st.title("Modular arithmetic")
stage = schema.MODULAR
if stage not in run.manifest["stages"]:
    st.info(f"Run **{run.name}** has no `{stage}/` analysis. Train a modular model "
            "(`arithinterp train RUN --task mod113-add`, or the zoo's `modadd-113`) and run "
            "`arithinterp modular RUN`.")
    st.stop()

summary = common.read(run, schema.MOD_SUMMARY, stage) or {}
marks = {"memorized": summary.get("memorized_step"),
         "generalized": summary.get("generalized_step")}
keys = summary.get("key_frequencies", [])
c1, c2, c3, c4 = st.columns(4)
c1.metric("key frequencies", ", ".join(map(str, keys)) or "none")
c2.metric("memorized at step", marks["memorized"] or "not yet",
          help="first logged step with training accuracy >= 99%")
c3.metric("generalized at step", marks["generalized"] or "not yet",
          help="first logged step with test accuracy >= 99%")
c4.metric("neuron variance explained", f"{summary.get('neuron_fve', float('nan')):.3f}",
          help="share of the MLP neurons' variance over (a, b) in the terms of the key "
               "frequencies: cos/sin(w_k a), cos/sin(w_k b) and their products")

curve = common.read(run, schema.TRAINING_CURVE, schema.MODEL, quiet=True)
if curve is not None and len(curve):
    common.chart(st, grokking_curves_figure(curve, marks=marks), key="mod_curves")
else:
    st.caption("This model's training curve is not in the run.")

st.subheader("Fourier spectra")
st.caption("Logits: the share of their power (after removing what softmax and the problem "
           "ignore) along cos/sin(w_k(a+b)), w_k = 2πk/p: a model computing cos(w_k(a+b−c)) "
           "puts it there. Embedding: the share of W_E's residue rows per frequency.")
left, right = st.columns(2)
spectrum = common.read(run, schema.MOD_LOGIT_SPECTRUM, stage)
if spectrum is not None:
    common.chart(left, fourier_spectrum_figure(
        spectrum, frequency="frequency", value="fraction", color="key",
        title="Logits over (a, b): share per frequency"), key="mod_logit_spectrum")
embedding = common.read(run, schema.MOD_EMBEDDING_SPECTRUM, stage)
if embedding is not None:
    common.chart(right, fourier_spectrum_figure(
        embedding[embedding["frequency"] > 0], frequency="frequency", value="fraction",
        color="key", title="Embedding W_E: share per frequency"), key="mod_embedding_spectrum")

st.subheader("Progress measures")
progress = common.read(run, schema.MOD_PROGRESS, stage, quiet=True)
if progress is not None and len(progress):
    st.caption(f"From {summary.get('progress_from')}. Restricted loss keeps only the key "
               "frequencies' directions of the logits, excluded loss removes them; the Gini "
               "coefficient of the Fourier norms rises as the embedding and the neuron-logit "
               "map concentrate on a few frequencies.")
    common.chart(st, progress_figure(progress, marks=marks), key="mod_progress")
else:
    st.caption("No weight snapshots were saved while this model trained "
               "(TrainConfig.snapshot_every), so there are no progress measures.")

st.subheader("Loss of the full, restricted and excluded logits")
losses = common.read(run, schema.MOD_LOSSES, stage)
if losses is not None:
    st.dataframe(losses, hide_index=True, key="mod_losses")

st.subheader("Neurons")
neurons = common.read(run, schema.MOD_NEURONS, stage)
if neurons is not None:
    common.chart(st, neuron_frequencies_figure(neurons), key="mod_neurons")

probes = common.read(run, schema.MOD_PROBES, stage, quiet=True)
if probes is not None and len(probes):
    st.subheader("Fourier probes")
    st.caption("Ridge probes of cos/sin(w_k x) for the key frequencies, x = a, b or the "
               "answer c, at each residual site and position; R² on held-out problems, with "
               "the same probe on a randomly initialised model.")
    r2 = probes[probes["metric"] == "r2"]
    table = r2.pivot_table(index="target", columns=["site", "label"], values="score")
    table.columns = [f"{site} @ {label}" for site, label in table.columns]
    st.dataframe(table.round(3), key="mod_probes")
