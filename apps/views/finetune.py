"""Fine-tuning: gain on the target task against forgetting on the others, per arm (the
localized components, random components of the same kinds, everything, nothing), with
every draw and seed, the components each arm trained, and the curves."""

import common
import streamlit as st

from arithinterp import schema, viz

run = common.current_run()
st.title("Selective fine-tuning")
stages = common.stages_of(run, schema.FINETUNE)
if not stages:
    st.info(f"Run **{run.name}** has no `{schema.FINETUNE}/` comparison: run "
            "`arithinterp finetune` on it (or the demo) to produce one.")
    st.stop()
stage = st.selectbox("Comparison", stages, key="ft_stage") if len(stages) > 1 else stages[0]
table = common.read(run, schema.FINETUNE_COMPARISON, stage)
summary = common.read(run, schema.FINETUNE_SUMMARY, stage, quiet=True) or {}
if table is None:
    st.stop()
st.caption(f"Target **{summary.get('target', '?')}**; forgetting on "
           f"**{', '.join(summary.get('other_tasks', [])) or 'no other task'}**; selected "
           f"components **{', '.join(summary.get('selected', []))}**. Every arm starts from the "
           "run's model with the same problems, steps and seeds; exact match on held-out "
           "problems.")
common.chart(st, viz.gain_forgetting_figure(table), key="ft_gain")
means = (table.groupby(["arm", "role", "task"])
         .agg(runs=("change", "size"), before=("exact_before", "mean"),
              after=("exact_after", "mean"), change=("change", "mean"),
              spread=("change", "std"), params=("n_params", "mean"),
              seconds=("seconds", "mean")).reset_index())
st.dataframe(means, hide_index=True, key="ft_means")
with st.expander("Every arm, draw and seed"):
    st.dataframe(table, hide_index=True, key="ft_table")
curves = common.read(run, schema.FINETUNE_CURVES, stage, quiet=True)
if curves is not None and len(curves):
    value = st.radio("Curve", ["exact_match", "loss"], horizontal=True, key="ft_curve_value")
    common.chart(st, viz.finetune_curves_figure(curves, value=value), key="ft_curves")
