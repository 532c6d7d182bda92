"""Attention: one head's or a whole layer's patterns on a typed or picked prompt or averaged
over the run's prompts, the same patterns on the prompt's tokens (hover one to see where it
attends), and the operand-digit summary."""

import common
import streamlit as st

from arithinterp import schema
from arithinterp.components import Component, head_label, layer_label
from arithinterp.models import facts
from arithinterp.viz.attention import (
    attention_heads_figure,
    attention_pattern_figure,
    attention_tokens_html,
    operand_attention_figure,
)

PICK, TYPE, MEAN, ALL = ("pick one of the run's", "type one", "mean over the run's",
                         "all heads")

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
        common.from_url("source", "attention_source", (PICK, TYPE, MEAN))
        common.from_url("layer", "attention_layer", range(shape.n_layers))
        common.from_url("head", "attention_head", [ALL, *range(shape.n_heads)])
        common.from_url("prompt", "attention_prompt", range(len(prompts)))
        c1, c2, c3 = st.columns([2, 1, 1])
        source = c1.radio("Prompt", [PICK, TYPE, MEAN], horizontal=True, key="attention_source",
                          help=f"{MEAN}: each pattern averaged over the run's {len(prompts)} "
                               "held-out problems")
        layer = c2.selectbox("Layer", range(shape.n_layers), format_func=layer_label,
                             key="attention_layer")
        head = c3.selectbox("Head", [ALL, *range(shape.n_heads)], key="attention_head",
                            format_func=lambda h: h if h == ALL else head_label(h))
        problems = None
        if source == TYPE:
            a, b = task.example_problem()
            text = st.text_input("Problem", value=task.display_problem(a, b),
                                 key="attention_problem")
            try:
                problems = (task.parse_problem(text),)
            except ValueError as e:
                st.error(f"Invalid problem: {e}")
        elif source == PICK:
            i = st.selectbox("Problem", range(len(prompts)), key="attention_prompt",
                             format_func=lambda i: task.display(*prompts[i]))
            problems = (prompts[i],)
        else:
            problems = tuple(prompts)
        common.to_url(source=source, layer=str(layer), head=str(head),
                      prompt=str(i) if source == PICK else None)
        if problems is not None:
            patterns, tokens = common.layer_patterns(
                loaded, common.model_key(run), common.task_key(task), problems, layer)
            on = task.display(*problems[0]) if len(problems) == 1 else \
                f"the mean of {len(problems)} problems"
            names = [Component("head", layer, h).name for h in range(shape.n_heads)]
            if head == ALL:
                common.chart(st, attention_heads_figure(
                    patterns, tokens, names,
                    title=f"Attention of every head of {layer_label(layer)} on {on}"),
                    key="attention_pattern")
            else:
                common.chart(st, attention_pattern_figure(
                    patterns[head], tokens, title=f"Attention of {names[head]} on {on}"),
                    key="attention_pattern")
            st.iframe(attention_tokens_html(
                patterns, tokens, names, title=f"{layer_label(layer)} on {on}",
                head=0 if head == ALL else head), height=190)

st.subheader("Attention on operand digits")
stage = common.pick_experiment(run, schema.LOCALIZE, key="attention_experiment")
table = common.read(run, schema.OPERAND_ATTENTION, stage) if stage else None
if table is not None and len(table):
    st.caption("For each head: the attention from the position that predicts answer digit "
               "c_k to each operand digit (a0 = least significant) and to everything else, "
               "averaged over the run's held-out prompts.")
    common.chart(st, operand_attention_figure(table), key="attention_operands")
