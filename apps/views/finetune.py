"""Fine-tuning: gain on the target task against forgetting on the others, per arm (the
localized components, random components of the same kinds, everything, nothing), with
every draw and seed, the components each arm trained, and the curves. For a pretrained LLM
the forgetting is, first, the change of its perplexity on held-out English text, then the
change on the other arithmetic suites."""

import common
import streamlit as st

from arithinterp import schema
from arithinterp.viz.finetune import (
    finetune_curves_figure,
    gain_forgetting_figure,
    gain_perplexity_figure,
)

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
llm = "ppl_after" in table.columns  # a pretrained LLM: perplexity on held-out text
others = ", ".join(summary.get("other_tasks", [])) or f"no other {'suite' if llm else 'task'}"
selected = ", ".join(summary.get("selected", []))
if llm:
    st.caption(f"**{summary.get('model', '?')}** fine-tuned on **{summary.get('target', '?')}** "
               f"({summary.get('n_train', '?')} problems); exact match on "
               f"{summary.get('n_eval', '?')} held-out problems of it and of **{others}**; "
               f"perplexity on {summary.get('n_windows', '?')} windows of "
               f"{summary.get('window', '?')} tokens of `{summary.get('text', '?')}` (before: "
               f"{summary.get('perplexity_before', float('nan')):.2f}); selected components "
               f"**{selected}**. Every arm starts from the same model with the same problems, "
               "steps and seeds.")
    common.chart(st, gain_perplexity_figure(table), key="ft_gain_ppl")
    if (table["role"] == "other").any():
        common.chart(st, gain_forgetting_figure(table), key="ft_gain")
else:
    st.caption(f"Target **{summary.get('target', '?')}**; forgetting on **{others}**; selected "
               f"components **{selected}**. Every arm starts from the run's model with the same "
               "problems, steps and seeds; exact match on held-out problems.")
    common.chart(st, gain_forgetting_figure(table), key="ft_gain")
ppl = {"ppl_before": ("ppl_before", "mean"), "ppl_after": ("ppl_after", "mean")} if llm else {}
means = (table.groupby(["arm", "role", "task"])
         .agg(runs=("change", "size"), before=("exact_before", "mean"),
              after=("exact_after", "mean"), change=("change", "mean"),
              spread=("change", "std"), **ppl, params=("n_params", "mean"),
              seconds=("seconds", "mean")).reset_index())
st.dataframe(means.round(4), hide_index=True, key="ft_means")
tuned = table.drop_duplicates(["arm", "draw", "seed"])[
    ["arm", "draw", "seed", "components", "n_params", "seconds"]]
st.subheader("Components each arm trained")
st.dataframe(tuned.round(2), hide_index=True, key="ft_components")
with st.expander("Every arm, draw, seed and " + ("suite" if llm else "task")):
    st.dataframe(table, hide_index=True, key="ft_table")
curves = common.read(run, schema.FINETUNE_CURVES, stage, quiet=True)
if curves is not None and len(curves):
    value = st.radio("Curve", ["exact_match", "loss"], horizontal=True, key="ft_curve_value")
    common.chart(st, finetune_curves_figure(curves, value=value), key="ft_curves")
