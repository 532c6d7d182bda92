"""Multiplication: a study's arms compared (per-digit accuracy over training, running-sum
probe MAE per c_k, Fourier R²), and one model's reverse-engineering views (the attention
graph on a chosen prompt and head, operand pairs, logit attribution per digit, Fourier)."""

import common
import pandas as pd
import streamlit as st

from arithinterp import schema
from arithinterp.components import Component, head_label, layer_label
from arithinterp.models import facts
from arithinterp.runs import RunDir
from arithinterp.viz.attention import attention_graph_figure
from arithinterp.viz.attribution import digit_attribution_figure
from arithinterp.viz.multiplication import arm_digits_figure, digit_curves_figure

STUDY = "study"  # the stage of a study's report run

run = common.current_run()
st.title("Multiplication")
target = run
summary = run.stage_summary(STUDY) if STUDY in run.manifest["stages"] else None

if summary is not None:
    comparison = common.read(run, schema.STUDY_COMPARISON, STUDY)
    curves = common.read(run, schema.STUDY_CURVES, STUDY)
    if comparison is not None:
        st.subheader("Arms and seeds")
        st.caption("Held-out exact match of every arm (sft: answer only; icot: implicit chain "
                   "of thought; aux: sft + the running-sum loss) and seed.")
        cols = ["arm", "seed", "exact_match", "steps"] + [
            c for c in comparison.columns if c.startswith(("acc_c", "mae_c", "r2_"))]
        st.dataframe(comparison[cols], hide_index=True, key="mul_comparison")
        left, right = st.columns(2)
        with left:
            common.chart(st, arm_digits_figure(
                comparison, prefix="acc_c", title="Held-out accuracy per answer digit",
                y_title="accuracy"), key="mul_digit_accuracy")
        with right:
            common.chart(st, arm_digits_figure(
                comparison, prefix="mae_c", title="Running-sum probe MAE per c_k (lower: "
                "c_k is linearly readable)", y_title="MAE"), key="mul_probe_mae")
    if curves is not None and len(curves):
        value = st.radio("Over training", ["digit_accuracy", "digit_loss"], horizontal=True,
                         key="mul_curve_value")
        common.chart(st, digit_curves_figure(curves, value=value), key="mul_curves")
    names = [n for n in summary.get("runs", []) if (run.dir.parent / n).is_dir()]
    if not names:
        st.info("The study's arm runs are not beside its report in this runs folder.")
        st.stop()
    st.divider()
    pick = st.selectbox("Model views of the arm run", names, key="mul_arm_run")
    target = RunDir.open(run.dir.parent / pick)

stage = schema.MULTIPLICATION
if stage not in target.manifest["stages"]:
    st.info(f"Run **{target.name}** has no `{stage}/` analysis: run the multiplication study "
            "(`arithinterp multiply`) or add its stage to a multiplication run.")
    st.stop()

st.subheader(f"Running sums in {target.name}")
sums = common.read(target, schema.MUL_RUNNING_SUMS, stage)
if sums is not None:
    st.caption("Ridge probe of c_k = Σ_{i+j=k} a_i·b_j + carry at the position that predicts "
               "answer digit k, best layer; beside it the same probe on shuffled labels, on a "
               "randomly initialised model, and the train mean.")
    st.dataframe(sums, hide_index=True, key="mul_running_sums")

task = common.task_of(target)
loaded = common.model_of(target, task) if task is not None else None
st.subheader("Attention graph")
if loaded is not None:
    shape = facts(loaded.model)
    prompts = common.run_prompts(target, task)
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    i = c1.selectbox("Prompt", range(len(prompts)), key="mul_prompt",
                     format_func=lambda i: task.display(*prompts[i]))
    layer = c2.selectbox("Layer", range(shape.n_layers), format_func=layer_label,
                         key="mul_layer")
    head = c3.selectbox("Head", range(shape.n_heads), format_func=head_label, key="mul_head")
    threshold = c4.slider("Edges from", 0.05, 1.0, 0.2, 0.05, key="mul_threshold")
    pattern, labels = common.attention_pattern(loaded, common.model_key(target),
                                               common.task_key(task), *prompts[i], layer, head)
    rows = [{"query_pos": q, "key_pos": k, "attention": float(pattern[q, k])}
            for q in range(len(labels)) for k in range(q + 1) if pattern[q, k] >= threshold]
    name = Component("head", layer, head).name
    common.chart(st, attention_graph_figure(
        pd.DataFrame(rows, columns=["query_pos", "key_pos", "attention"]), labels,
        title=f"{name} on {task.display(*prompts[i])}: key → query, attention ≥ {threshold}"),
        key="mul_graph")
    pairs = common.read(target, schema.MUL_OPERAND_PAIRS, stage, quiet=True)
    if pairs is not None:
        mine = pairs[pairs["component"] == name]
        st.caption(f"Operand digit pair {name} attends to most at each position (mean over "
                   "prompts); a_i·b_j enters the running sum of answer digit i + j.")
        st.dataframe(mine[["query_label", "a_digit", "b_digit", "i_plus_j", "pair_attention"]],
                     hide_index=True, key="mul_pairs")

st.subheader("Logit attribution per answer digit")
attribution = common.read(target, schema.MUL_DIGIT_ATTRIBUTION, stage)
if attribution is not None and len(attribution):
    common.chart(st, digit_attribution_figure(attribution), key="mul_attribution")

st.subheader("Fourier features")
fourier = common.read(target, schema.MUL_FOURIER, stage)
if fourier is not None:
    st.caption("Median R² of frequencies {0, 1, 2, 5} (Bai et al. report 0.84 for the "
               "embeddings, 0.95 MLP, 0.99 final hidden state of their ICoT model), trained "
               "against a randomly initialised model of the same shape.")
    st.dataframe(fourier.pivot(index="source", columns="model", values="median_r2")
                 .reset_index(), hide_index=True, key="mul_fourier")
