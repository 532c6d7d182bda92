"""Sweeps: a metric of every trial against one axis, a line per value of another with a band
over the rest (seeds), as in Lee et al.'s phase-transition plots; a click on a point opens
that trial's run. Below, every trial's status, error and metrics."""

import common
import pandas as pd
import streamlit as st

from arithinterp import schema
from arithinterp.catalog import list_runs
from arithinterp.viz.sweeps import sweep_figure

st.title("Sweeps")
records = [r for r in list_runs(common.runs_dir(), include_incomplete=True)
           if schema.SWEEP in r.manifest["stages"]]
if not records:
    st.info(f"The runs folder `{common.runs_dir()}` holds no sweep: run `arithinterp sweep "
            "SPEC` (e.g. sweeps/formats.toml) to make one.")
    st.stop()
names = [r.name for r in records]
current = st.session_state.get("run")
# the sidebar's run if it is a sweep, else the sweep it is a trial of, else the newest
default = next((n for n in names if n == current or (
    current or "").startswith(n.removesuffix(f"-{schema.SWEEP}") + ".")), names[-1])
name = st.selectbox("Sweep", names, index=names.index(default), key="sweep_pick")
record = records[names.index(name)]
table = common.read(record, schema.SWEEP_TRIALS, schema.SWEEP)
if table is None:
    st.stop()
config = record.manifest["config"]
axes = list(config.get("grid") or {}) or list(dict.fromkeys(
    k for point in config.get("trials") or [] for k in point))
counts = table["status"].value_counts().to_dict()
st.caption(f"**{len(table)} trials**: " + ", ".join(f"{n} {s}" for s, n in counts.items())
           + f" · record `{record.name}` ({record.status}); axes: "
           + ", ".join(f"`{a}`" for a in axes))

numeric = [c for c in table.columns if c not in ("trial", "run", "status", "error",
                                                 "config_hash", *axes)
           and pd.api.types.is_numeric_dtype(table[c])]
done = table[table["status"] == "done"]
if done.empty or not numeric or not axes:
    st.info("No trial of this sweep has finished yet: the plot appears with the first one.")
else:
    left, mid, right, far = st.columns(4)
    y = left.selectbox("Metric", numeric, key="sweep_y",
                       index=numeric.index("exact_match") if "exact_match" in numeric else 0)
    x = mid.selectbox("x axis", axes, key="sweep_x",
                      index=axes.index("n_train") if "n_train" in axes else 0)
    others = [a for a in axes if a != x and a != "seed"]
    color = right.selectbox("One line per", ["(none)", *others], key="sweep_color",
                            index=1 if others else 0)
    positive = pd.api.types.is_numeric_dtype(done[x]) and (done[x] > 0).all()
    log_x = far.toggle("log x", value=bool(positive) and x == "n_train", key="sweep_log",
                       disabled=not positive)
    fig = sweep_figure(table, x=x, y=y, color=None if color == "(none)" else color,
                       log_x=log_x)
    event = common.chart(st, fig, key="sweep_plot", on_select="rerun",
                            selection_mode="points", width="stretch")
    clicked = next((p["customdata"][0] for p in common.new_points(event, "sweep_plot")
                    if isinstance(p.get("customdata"), list | tuple) and p["customdata"]), None)
    if clicked is not None:
        common.open_run(clicked)

st.subheader("Trials")
failed = table[table["status"] == "failed"]
for row in failed.itertuples():
    st.warning(f"`{row.trial}` failed: {row.error}")
shown = ["trial", "status", *axes] + [c for c in ("exact_match", "steps", "steps_to_target",
                                                  "wall_seconds") if c in table.columns]
st.dataframe(table[shown], hide_index=True, key="sweep_table")
with st.expander("Every column (the stages' recorded metrics)"):
    st.dataframe(table, hide_index=True, key="sweep_all")
