"""Compare: one patching grid of two runs (or two experiments of one run) side by side and as
their difference, all three on one colour scale. Typical pairs: add3-plain vs add3-reversed,
a trained model vs its random initialization, one corruption vs another."""

import common
import numpy as np
import streamlit as st

from arithinterp import schema
from arithinterp.analysis.patching import HEAD_SITES, patching_difference
from arithinterp.catalog import list_runs
from arithinterp.viz.patching import patching_figure

VALUES = {"effect": "effect (0 = no change, 1 = all the way)", "value": "raw metric"}
# (site is a head site, by_pos) -> heatmap axes
AXES = {(False, True): ("layer", "pos"), (True, False): ("layer", "head"),
        (True, True): ("component", "pos")}


def grid_label(grid: tuple[str, bool]) -> str:
    site, by_pos = grid
    return f"{site} ({' × '.join(AXES[(site in HEAD_SITES, by_pos)])})"

run = common.current_run()
st.title("Compare two runs")
stage_a = common.pick_experiment(run, schema.LOCALIZE, key="compare_experiment_a")
if stage_a is None:
    st.stop()
include = bool(st.session_state.get("include_incomplete"))
others = [r for r in list_runs(common.runs_dir(), include_incomplete=include)
          if schema.experiments(r.manifest["stages"], schema.LOCALIZE)]
if not others:
    st.info("No run in this folder has localization results to compare with.")
    st.stop()
names = [r.name for r in others]
c1, c2 = st.columns(2)
name_b = c1.selectbox("Compare with run", names, key="compare_run_b",
                      index=next((i for i, n in enumerate(names) if n != run.name), 0),
                      help="Any run with localization results, this one included (then "
                           "compare two of its experiments).")
other = others[names.index(name_b)]
experiments_b = schema.experiments(other.manifest["stages"], schema.LOCALIZE)
same = stage_a.split("/", 1)[1]
exp_b = c2.selectbox("Its experiment", experiments_b, key="compare_experiment_b",
                     index=experiments_b.index(same) if same in experiments_b else 0)
stage_b = f"{schema.LOCALIZE}/{exp_b}"
A, B = common.read(run, schema.PATCHING, stage_a), common.read(other, schema.PATCHING, stage_b)
if A is None or B is None:
    st.stop()

c1, c2, c3 = st.columns(3)
value = c1.radio("Value", list(VALUES), format_func=VALUES.get, horizontal=True,
                 key="compare_value")
directions = [d for d in ("denoise", "noise") if d in set(A["direction"]) & set(B["direction"])]
if not directions:
    st.info("The two experiments share no patching direction.")
    st.stop()
direction = c2.radio("Direction", directions, horizontal=True, key="compare_direction")
grids_a = set(zip(A["site"], A["by_pos"], strict=True))
grids = [g for g in dict.fromkeys(zip(B["site"], B["by_pos"], strict=True)) if g in grids_a]
grid = c3.selectbox("Grid", grids, format_func=grid_label, key="compare_grid")
if grid is None:
    st.info("The two experiments share no patching grid.")
    st.stop()
site, by_pos = grid


def part(P):
    return P[(P["direction"] == direction) & (P["site"] == site) & (P["by_pos"] == by_pos)]


try:
    both = patching_difference(part(A), part(B), value=value)
except ValueError as e:
    st.error(f"Cannot compare these grids: {e}")
    st.stop()
rows, cols = AXES[(site in HEAD_SITES, by_pos)]
shown = both[[f"{value}_a", f"{value}_b", "difference"]].to_numpy(dtype=float)
bound = float(np.nanmax(np.abs(shown))) if np.isfinite(shown).any() else 1.0
zrange = (-max(bound, 1.0), max(bound, 1.0)) if value == "effect" else (-bound, bound)
summary = common.read(run, schema.LOCALIZE_SUMMARY, stage_a, quiet=True) or {}
st.caption(f"{len(both)} cells both hold; one colour scale [{zrange[0]:.3g}, {zrange[1]:.3g}] "
           f"for all three; difference = {run.name} − {other.name}. Largest |difference|: "
           f"{np.nanmax(np.abs(both['difference'])):.3f}.")
marks = {"mark_pos": summary.get("metric_pos"), "mark_label": summary.get("metric", "metric")}
for column, label, key in ((f"{value}_a", f"{run.name} · {stage_a}", "compare_a"),
                           (f"{value}_b", f"{other.name} · {stage_b}", "compare_b"),
                           ("difference", f"difference ({run.name} − {other.name})",
                            "compare_difference")):
    common.chart(st, patching_figure(
        both, rows=rows, cols=cols, value=column, zrange=zrange, **marks,
        title=f"{label}: {site}, {direction} ({value})"), key=key)
st.download_button("Download the comparison (CSV)", both.to_csv(index=False),
                   file_name=f"{run.name}-vs-{other.name}-{site}.csv", mime="text/csv",
                   key="compare_csv")
