"""LLM: a pretrained model's arithmetic — its greedy answers on the suite, and the
localization on the problems it answered: attribution over every head (layer × head) and by
position with the prompt's tokens on the axis, exact patching (every head and the residual
stream by layer × position where the fast engine covers the model) against the estimate,
the top heads' direct paths to the logits, the knockout of the top heads against random
heads, DLA, the logit lens and the heads' attention to the operands."""

import common
import streamlit as st

from arithinterp import schema
from arithinterp.viz.attention import operand_attention_figure
from arithinterp.viz.attribution import attribution_scatter_figure, dla_figure
from arithinterp.viz.fourier import llm_fourier_figure
from arithinterp.viz.patching import knockout_figure, patching_figure, paths_figure

TOP = 20  # components shown in the DLA and operand-attention figures

run = common.current_run()
st.title("LLM arithmetic")
experiments = [k for k in common.stages_of(run, schema.LOCALIZE)
               if run.has(schema.LLM_EXAMPLES, k)]
if not experiments:
    st.info(f"Run **{run.name}** has no LLM experiment: run `arithinterp llm run` (or "
            "`arithinterp demo --llm`) to make one.")
    st.stop()
common.from_url("experiment", "llm_experiment", experiments)
stage = st.selectbox("Experiment", experiments, key="llm_experiment") \
    if len(experiments) > 1 else experiments[0]
common.to_url(experiment=stage if len(experiments) > 1 else None)
summary = common.read(run, schema.LOCALIZE_SUMMARY, stage) or {}
ev = summary.get("evaluation", {})
common.provenance(run, stage)

st.subheader("Answers")
examples = common.read(run, schema.LLM_EXAMPLES, stage)
if examples is not None:
    st.caption(f"**{summary.get('model', '?')}** on **{ev.get('suite', '?')}**: greedy exact "
               f"match {ev.get('exact_match', float('nan')):.3f} ({ev.get('n_correct', '?')} of "
               f"{ev.get('n', '?')}). {summary.get('kept', '')}.")
    shown = examples.assign(question=examples["prompt"].str.split("\n").str[-1])
    only = st.radio("Show", ["all", "correct", "wrong"], horizontal=True, key="llm_show")
    if only != "all":
        shown = shown[shown["correct"] == (only == "correct")]
    st.dataframe(shown[["question", "answer", "generated", "parsed", "correct", "n_tokens"]],
                 hide_index=True, height=240, key="llm_examples")

st.subheader("Where the answer is computed")
st.caption(f"Pairs changing **{summary.get('change', '?')}**, metric **{summary.get('metric')}** "
           f"at the last position (clean {summary.get('clean_metric', float('nan')):.2f}, "
           f"corrupted {summary.get('corrupted_metric', float('nan')):.2f}); 1 = the patch "
           "restores the clean metric. Attribution patching is a linear estimate from one "
           "forward and backward pass.")
attribution = common.read(run, schema.ATTRIBUTION, stage)
if attribution is not None and len(attribution):
    heads = attribution[attribution["site"] == "z"]
    common.heatmap(patching_figure(heads, rows="layer", cols="head", value="normalized",
                                   zrange=(-1.0, 1.0), title="Every head, all positions "
                                   "(attribution estimate)"), "llm_heads", heads, run)
    sites = [s for s in ("resid_pre", "mlp_out") if (attribution["site"] == s).any()]
    site = st.radio("By position", sites, horizontal=True, key="llm_site")
    part = attribution[attribution["site"] == site]
    common.heatmap(patching_figure(
        part, rows="layer", cols="pos", value="normalized", zrange=(-1.0, 1.0),
        mark_pos=summary.get("metric_pos"), mark_label="answer read here",
        title=f"{site} by layer × position (attribution estimate)"), "llm_positions", part, run)
exact = common.read(run, schema.PATCHING, stage)
if exact is not None and (exact["site"] == "resid_pre").any():
    st.caption("The fast exact engine patched every head and the residual stream at every "
               "layer and position, one patched run per cell, no estimate.")
    heads = exact[exact["site"] == "z"]
    common.heatmap(patching_figure(heads, rows="layer", cols="head", value="normalized",
                                   zrange=(-1.0, 1.0), title="Every head, all positions "
                                   "(exact)"), "llm_heads_exact", heads, run)
    part = exact[exact["site"] == "resid_pre"]
    common.heatmap(patching_figure(
        part, rows="layer", cols="pos", value="normalized", zrange=(-1.0, 1.0),
        mark_pos=summary.get("metric_pos"), mark_label="answer read here",
        title="resid_pre by layer × position (exact)"), "llm_positions_exact", part, run)
paths = common.read(run, schema.PATHS, stage, quiet=True)
if paths is not None and len(paths):
    common.chart(st, paths_figure(paths), key="llm_paths")
    st.caption("Path patching of the top heads to the logits: each head's clean output "
               "difference reaches the final norm and unembedding only, not the later layers "
               "(its direct effect; 1 = the clean metric).")
if exact is not None and attribution is not None and len(exact):
    left, right = st.columns(2)
    with left:
        common.chart(st, attribution_scatter_figure(
            attribution[attribution["site"] == "z"], exact[exact["site"] == "z"],
            value="normalized"), key="llm_scatter")
        st.caption(f"Exactly patched heads against their estimate; Pearson r over every "
                   f"exactly patched head and MLP "
                   f"{summary.get('attribution_exact_pearson', float('nan')):.2f}.")
    with right:
        ranking = common.read(run, schema.RANKING, stage)
        if ranking is not None:
            st.dataframe(ranking[["rank", "component", "effect"]], hide_index=True, height=320,
                         key="llm_ranking")

st.subheader("Knockout: the top heads against random heads")
knockout = common.read(run, schema.KNOCKOUT, stage)
if knockout is not None and len(knockout):
    common.chart(st, knockout_figure(knockout), key="llm_knockout")
    st.caption("Mean ablation over the pairs' clean prompts; exact match is the accuracy of "
               "the answer's first token at the last position.")

st.subheader("Direct logit attribution and the logit lens")
left, right = st.columns(2)
with left:
    dla = common.read(run, schema.DLA, stage)
    if dla is not None and len(dla):
        top = dla.reindex(dla["value"].abs().sort_values(ascending=False).index).head(TOP)
        common.chart(st, dla_figure(top), key="llm_dla")
        st.caption(f"The {TOP} largest of {len(dla)} contributions; all of them sum to "
                   f"{dla['value'].sum():.2f}, the mean logit difference.")
with right:
    common.logit_lens(run, stage, key="llm_lens")

st.subheader("Attention to the operands")
attention = common.read(run, schema.OPERAND_ATTENTION, stage)
if attention is not None and len(attention):
    operand = attention[attention["key"] != "other"]
    strongest = operand.groupby("component")["attention"].sum().nlargest(TOP).index
    common.chart(st, operand_attention_figure(
        attention[attention["component"].isin(strongest)]), key="llm_attention")
    st.caption(f"The {TOP} heads that attend most from the last position to the question's "
               "operands (a: all of a's tokens; b: all of b's).")

st.subheader("Fourier features of the digits")
fourier = common.read(run, schema.LLM_FOURIER, stage, quiet=True)
if fourier is None:
    st.info("This experiment has no Fourier table (it needs answers starting with each of the "
            "ten digits: a 1-digit addition suite has them).")
else:
    common.chart(st, llm_fourier_figure(fourier), key="llm_fourier")
    st.caption("Each table has one row per digit 0–9: the digit tokens' embedding and "
               "unembedding rows, and the mean residual stream at the last position over the "
               "prompts whose answer starts with that digit. Zhou et al. (2024) find periods "
               "2, 5 and 10 in pretrained LLMs' number representations; the dotted line fits "
               "the same tables with their rows shuffled.")
