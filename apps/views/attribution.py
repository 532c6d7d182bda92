"""Attribution: direct logit attribution, the logit lens, attribution vs exact patching, paths."""

import common
import streamlit as st

from arithinterp import schema
from arithinterp.viz.attribution import attribution_scatter_figure, dla_figure
from arithinterp.viz.patching import paths_figure

run = common.current_run()
st.title("Attribution")
stage = common.pick_experiment(run, schema.LOCALIZE, key="attribution_experiment")
if stage is None:
    st.stop()
summary = common.read(run, schema.LOCALIZE_SUMMARY, stage, quiet=True) or {}
if summary:
    st.caption(f"Pairs changing **{summary.get('change', '?')}**, metric "
               f"**{summary.get('metric', '?')}** at position {summary.get('metric_pos', '?')}.")

st.subheader("Direct logit attribution")
dla = common.read(run, schema.DLA, stage)
if dla is not None:
    if dla.empty:
        st.info("DLA decomposes a logit difference; this run's localization used another metric.")
    else:
        common.chart(st, dla_figure(dla), key="attribution_dla")
        st.caption(f"Components sum to the mean logit difference: {dla['value'].sum():.3f}.")

st.subheader("Logit lens")
common.logit_lens(run, stage, key="attribution_lens")

st.subheader("Attribution patching vs exact patching")
attribution = common.read(run, schema.ATTRIBUTION, stage)
exact = common.read(run, schema.PATCHING, stage, quiet=True)
if attribution is not None and exact is not None and len(attribution):
    grid_names = attribution["site"] + attribution["by_pos"].map(
        {True: " by position", False: " all positions"})
    grids = list(dict.fromkeys(grid_names))
    choice = st.multiselect("Grids", grids, default=grids, key="attribution_grids")
    if choice:
        value = st.radio("Value", ["normalized", "value"], horizontal=True,
                         key="attribution_value")
        common.chart(st, attribution_scatter_figure(attribution[grid_names.isin(choice)],
                                                   exact, value=value),
                        key="attribution_scatter")
    agreement = common.read(run, schema.ATTRIBUTION_VS_EXACT, stage, quiet=True)
    if agreement is not None:
        st.dataframe(agreement, hide_index=True)

st.subheader("Path patching")
paths = common.read(run, schema.PATHS, stage)
if paths is not None and len(paths):
    common.chart(st, paths_figure(paths), key="attribution_paths")
