"""Attention: one head's pattern on a typed or picked prompt, and the operand-digit summary."""

import common
import streamlit as st

from arithinterp import schema, viz
from arithinterp.components import Component, head_label, layer_label
from arithinterp.models import facts

run = common.current_run()
st.title("Attention")
task = common.task_of(run)

st.subheader("Attention pattern")
if task is None:
    st.info(f"Run **{run.name}** records no task: no prompts to show attention on.")
else:
    loaded = common.model_of(run)
    if loaded is not None:
        shape = facts(loaded.model)
        prompts = common.run_prompts(run, task)
        c1, c2, c3 = st.columns([2, 1, 1])
        source = c1.radio("Prompt", ["pick one of the run's", "type one"], horizontal=True,
                          key="attention_source")
        layer = c2.selectbox("Layer", range(shape.n_layers), format_func=layer_label,
                             key="attention_layer")
        head = c3.selectbox("Head", range(shape.n_heads), format_func=head_label,
                            key="attention_head")
        problem = None
        if source == "type one":
            a, b = common.example_problem(task)
            text = st.text_input("Problem", value=task.display_problem(a, b),
                                 key="attention_problem")
            try:
                problem = common.parse_problem(text, task)
            except ValueError as e:
                st.error(f"Invalid problem: {e}")
        else:
            i = st.selectbox("Problem", range(len(prompts)), key="attention_prompt",
                             format_func=lambda i: task.display(*prompts[i]))
            problem = prompts[i]
        if problem is not None:
            pattern, tokens = common.attention_pattern(
                loaded, common.model_key(run), common.task_key(task), *problem, layer, head)
            name = Component("head", layer, head).name
            common.chart(st, viz.attention_pattern_figure(
                pattern, tokens, title=f"Attention of {name} on {task.display(*problem)}"),
                key="attention_pattern")

st.subheader("Attention on operand digits")
stage = common.pick_experiment(run, schema.LOCALIZE, key="attention_experiment")
table = common.read(run, schema.OPERAND_ATTENTION, stage) if stage else None
if table is not None and len(table):
    st.caption("For each head: the attention from the position that predicts answer digit "
               "c_k to each operand digit (a0 = least significant) and to everything else, "
               "averaged over the run's held-out prompts.")
    common.chart(st, viz.operand_attention_figure(table), key="attention_operands")
