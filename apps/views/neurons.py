"""Neurons: a small Neuronpedia for one MLP layer of the run's model. Per-neuron direct logit
attribution toward a localization's answer digit, patching of the top neurons one at a time
(both directions, as effects), and for one neuron its top-activating problems and its mean
activation by an operand digit, a carry or a running sum. Live forward passes, cached."""

import common
import streamlit as st

from arithinterp import schema
from arithinterp.analysis.neurons import activation_by
from arithinterp.components import layer_label, neuron_label
from arithinterp.models import facts
from arithinterp.viz.neurons import activation_by_figure, neuron_dla_figure, neuron_patching_figure

N_PROBLEMS = 512  # fresh problems for a neuron's profile
TOP = 10  # neurons patched one at a time

run = common.current_run()
st.title("MLP neurons")
stage = common.pick_experiment(run, schema.LOCALIZE, key="neurons_experiment")
task = common.task_of(run, stage) if stage else None
loaded = common.model_of(run, task) if task is not None else None
if stage is None or loaded is None:
    st.stop()
shape = facts(loaded.model)
if shape.attn_only:
    st.info(f"Run **{run.name}**'s model is attention-only: it has no MLP neurons.")
    st.stop()
pairs = common.experiment_pairs(run, stage, task)
if pairs is None:
    st.stop()
summary = common.read(run, schema.LOCALIZE_SUMMARY, stage, quiet=True) or {}
digit = int(summary.get("answer_digit", 0))
labels = task.position_labels()
layer = st.selectbox("MLP layer", range(shape.n_layers), index=shape.n_layers - 1,
                     format_func=layer_label, key="neurons_layer")
table, patched = common.neuron_views(loaded, common.model_key(run), f"{run.dir}:{stage}",
                                     pairs, digit, layer, TOP)
pos = summary.get("metric_pos", pairs.clean.spec.answer_positions()[digit] - 1)
st.caption(f"{len(pairs)} minimal pairs of **{stage}** (changing {pairs.change}); DLA toward "
           f"logit(correct) − logit(corrupted answer) of c{digit} at position "
           f"{labels[pos] if pos < len(labels) else pos}, on the clean prompts; the "
           f"{shape.d_mlp} neurons of {layer_label(layer)} plus its output bias sum to that "
           "MLP's DLA.")

left, right = st.columns(2)
with left:
    st.subheader(f"Direct logit attribution, top {TOP * 2}")
    common.chart(st, neuron_dla_figure(
        table.head(TOP * 2), title=f"{layer_label(layer)} neurons by |DLA| (mean ± std over "
                               "prompts)"), key="neurons_dla")
with right:
    st.subheader(f"Patching the top {TOP}, one at a time")
    shown = patched.merge(table[["neuron", "component"]].astype({"neuron": str}),
                          left_on="neurons", right_on="neuron")
    common.chart(st, neuron_patching_figure(
        shown, title="Patching one neuron at every position"), key="neurons_patching")

with st.expander("Every neuron of the layer"):
    st.dataframe(table, hide_index=True, key="neurons_table")

st.divider()
choices = table["neuron"].tolist()
neuron = st.selectbox("Neuron", choices, key="neurons_neuron",
                      format_func=lambda n: neuron_label(layer, n))
top_problems, acts, targets = common.neuron_profile(
    loaded, common.model_key(run), common.task_key(task), N_PROBLEMS, layer, int(neuron), pos)
left, right = st.columns(2)
with left:
    st.subheader(f"Top-activating problems at {labels[pos] if pos < len(labels) else pos}")
    st.dataframe(top_problems, hide_index=True, key="neurons_top")
with right:
    st.subheader("Activation by a property of the problem")
    target = st.selectbox("Property", list(targets), key="neurons_target")
    by = activation_by(acts, targets[target], name=target)
    common.chart(st, activation_by_figure(
        by, target, title=f"{neuron_label(layer, neuron)}: mean activation by {target} "
                      f"({N_PROBLEMS} fresh problems)"), key="neurons_by")
