"""Patching: exact activation patching grids of one localization experiment, clickable.

Three heatmaps (layer × position, layer × head, head × position for one layer) beside the
selected component. Values are read as effects on one scale for both directions (the
library's `directed_effect`): 0 = the patch changes nothing, 1 = it moves the metric all
the way (denoising restores the clean run, noising destroys it), or as the raw metric.
Colours default to one fixed range for every heatmap; the position the metric is read at is
marked. Clicking a cell selects that component (outlined): its effect over the prompts
(each prompt by its own clean and corrupted metric) and, for a head, its attention pattern
on one of the run's prompts (a live forward pass).
"""

import json

import common
import numpy as np
import pandas as pd
import streamlit as st

from arithinterp import schema
from arithinterp.components import Component, layer_label
from arithinterp.core.metrics import directed_effect
from arithinterp.viz.attention import attention_pattern_figure
from arithinterp.viz.patching import (
    effect_distribution_figure,
    knockout_figure,
    patching_figure,
    patching_panels_figure,
)

METRICS = {"effect": "effect (0 = no change, 1 = all the way)", "value": "raw metric"}
SCALES = {"fixed": "fixed (one range for all)", "free": "per heatmap"}
EFFECT_READING = {"denoise": "effect = share of the clean metric restored",
                  "noise": "effect = 1 − restored: share of the clean metric lost"}


def cell_label(cell: dict, labels: list[str]) -> str:
    comp = Component("head", cell["layer"], cell["head"]).name if cell.get("head") is not None \
        else layer_label(cell["layer"])
    where = (f" at {labels[cell['pos']]}" if cell.get("pos") is not None
             and cell["pos"] < len(labels) else "" if cell.get("pos") is not None
             else " (all positions)")
    return f"{comp} {cell['site']}{where}, {cell['direction']}"


def rows_of(P: pd.DataFrame, cell: dict) -> pd.DataFrame:
    sel = (P["site"] == cell["site"]) & (P["by_pos"] == cell["by_pos"]) \
        & (P["direction"] == cell["direction"]) & (P["layer"] == cell["layer"])
    sel &= P["head"].isna() if cell.get("head") is None else P["head"] == cell["head"]
    sel &= P["pos"].isna() if cell.get("pos") is None else P["pos"] == cell["pos"]
    return P[sel]


def default_cell(P: pd.DataFrame, direction: str) -> dict:
    """The head with the largest |effect| over all positions (else the strongest cell)."""
    here = P[P["direction"] == direction]
    heads = here[(here["site"] == "z") & ~here["by_pos"]]
    pool = heads if len(heads) else here
    best = pool.loc[pool["effect"].abs().fillna(-1).idxmax()]
    return _cell(best)


def _cell(row) -> dict:
    return {"site": row["site"], "by_pos": bool(row["by_pos"]), "direction": row["direction"],
            "layer": int(row["layer"]),
            "head": None if pd.isna(row["head"]) else int(row["head"]),
            "pos": None if pd.isna(row["pos"]) else int(row["pos"])}


def cell_code(cell: dict) -> str:
    """A cell in the address: site:pos|all:layer:head (empty head for layer sites)."""
    where = "all" if not cell["by_pos"] else str(cell["pos"])
    return f"{cell['site']}:{where}:{cell['layer']}:{'' if cell['head'] is None else cell['head']}"


def cell_of_code(code: str | None, direction: str) -> dict | None:
    """The cell `cell_code` wrote, None for anything else."""
    parts = (code or "").split(":")
    if len(parts) != 4 or not parts[2].isdigit() or not (parts[1] == "all" or parts[1].isdigit()) \
            or not (parts[3] == "" or parts[3].isdigit()):
        return None
    return {"site": parts[0], "by_pos": parts[1] != "all", "direction": direction,
            "layer": int(parts[2]), "head": int(parts[3]) if parts[3] else None,
            "pos": None if parts[1] == "all" else int(parts[1])}


def prompt_rows(values: dict, keys: dict, idx: tuple, direction: str, pairs: dict,
                task) -> pd.DataFrame:
    """One row per minimal pair for the selected cell, by effect (largest first): the clean
    and corrupted problems written out, their metrics, the patched metric, the effect."""
    effect = directed_effect(values[keys["normalized"]][idx].astype(float), direction)
    clean, corrupt = (schema.pair_keys(side) for side in schema.PAIR_SIDES)
    table = pd.DataFrame({
        "pair": range(len(effect)),
        "clean": [task.display(int(a), int(b))
                  for a, b in zip(pairs[clean["a"]], pairs[clean["b"]], strict=True)],
        "corrupted": [task.display(int(a), int(b))
                      for a, b in zip(pairs[corrupt["a"]], pairs[corrupt["b"]], strict=True)],
        "clean metric": values[keys["clean"]].astype(float),
        "corrupted metric": values[keys["corrupted"]].astype(float),
        "patched metric": values[keys["values"]][idx].astype(float),
        "effect": effect})
    return table.sort_values("effect", ascending=False, kind="stable", na_position="last")


def prompt_grid(values: dict, keys: dict, axes: list[str], cell: dict, pair: int,
                direction: str, labels: list[str]) -> tuple[pd.DataFrame, str, str]:
    """One pair's effects over the selected cell's grid (one layer for head x position) as a
    tidy table, with its row and column axes."""
    per_pair = directed_effect(values[keys["normalized"]][..., pair].astype(float), direction)
    grid_axes = [a for a in axes if a != "batch"]
    if grid_axes == ["layer", "head", "pos"]:
        per_pair, grid_axes = per_pair[cell["layer"]], ["head", "pos"]
    rows = [{**dict(zip(grid_axes, ix, strict=True)), "effect": float(per_pair[ix])}
            for ix in np.ndindex(per_pair.shape)]
    table = pd.DataFrame(rows).assign(site=cell["site"], by_pos=cell["by_pos"],
                                      direction=direction)
    if "pos" in table:
        table["token"] = [labels[p] if p < len(labels) else f"p{p}" for p in table["pos"]]
    return table, grid_axes[0], grid_axes[1]


def outline(cell: dict, site: str, by_pos: bool, rows: str, cols: str,
            layer: int | None = None) -> tuple | None:
    """The (row key, col key) of the selected cell on this heatmap, None when it is not here."""
    if (cell["site"], cell["by_pos"]) != (site, by_pos) or \
            (layer is not None and cell["layer"] != layer):
        return None
    return cell[rows], cell[cols]


run = common.current_run()
st.title("Activation patching")
stage = common.pick_experiment(run, schema.LOCALIZE, key="patching_experiment")
if stage is None:
    st.stop()
P = common.read(run, schema.PATCHING, stage)
if P is None:
    st.stop()
if P.empty:
    st.info(f"Run **{run.name}** has an empty patching table.")
    st.stop()
summary = common.read(run, schema.LOCALIZE_SUMMARY, stage, quiet=True) or {}
task = common.task_of(run, stage)
labels = summary.get("position_labels") or (task.position_labels() if task else [])
if summary:
    st.caption(f"{summary.get('n_pairs', '?')} minimal pairs changing "
               f"**{summary.get('change', '?')}**, metric **{summary.get('metric', '?')}** "
               f"(clean {summary.get('clean_metric', float('nan')):.3f}, corrupted "
               f"{summary.get('corrupted_metric', float('nan')):.3f}). Denoise copies clean "
               "activations into the corrupted run; noise the reverse. Effects read both on one "
               "scale: 0 = the patch changes nothing, 1 = it moves the metric all the way. The "
               "dashed line marks the position the metric is read at. Click a cell.")
    for warning in summary.get("warnings", []):
        st.warning(warning)

common.provenance(run, stage)
common.from_url("value", "patching_metric", METRICS)
common.from_url("direction", "patching_direction", set(P["direction"]))
common.from_url("scale", "patching_scale", SCALES)
c1, c2, c3 = st.columns(3)
value = c1.radio("Value", list(METRICS), format_func=METRICS.get, horizontal=True,
                 key="patching_metric")
directions = [d for d in ("denoise", "noise") if d in set(P["direction"])]
direction = c2.radio("Direction", directions, horizontal=True, key="patching_direction")
scale = c3.radio("Colour scale", list(SCALES), format_func=SCALES.get, horizontal=True,
                 key="patching_scale")
here = P[P["direction"] == direction]
reading = EFFECT_READING[direction] if value == "effect" else "raw metric"
zrange = None
if scale == "fixed":
    bound = 1.0 if value == "effect" else float(here["value"].abs().max()) or 1.0
    zrange = (-bound, bound)
marks = {"mark_pos": summary.get("metric_pos"), "mark_label": summary.get("metric", "metric")}

if "patching_cell" not in st.session_state and (linked := cell_of_code(
        st.query_params.get("cell"), direction)) is not None:
    st.session_state["patching_cell"] = linked  # a shared address names its cell
cell = st.session_state.get("patching_cell")
if isinstance(cell, dict) and cell.get("direction") != direction:
    cell = {**cell, "direction": direction}  # the same component, read in this direction
if not isinstance(cell, dict) or rows_of(P, cell).empty:
    cell = None
shown = cell or default_cell(P, direction)
clicked = None
url = {}  # the selectors shown, for the address
grids, details = st.columns([3, 2])

with grids:
    st.subheader("Layer × position")
    resid = here[here["head"].isna() & here["by_pos"]]
    sites = list(dict.fromkeys(resid["site"]))
    if not sites:
        st.info(f"No layer × position grid was computed for direction {direction}.")
    else:
        common.from_url("site", "patching_site_pos", sites)
        site = st.selectbox("Site", sites, key="patching_site_pos")
        url["site"] = site
        grid = resid[resid["site"] == site]
        fig = patching_figure(
            grid, rows="layer", cols="pos", value=value, zrange=zrange,
            selected=outline(shown, site, True, "layer", "pos"), **marks,
            title=f"Layer × position: {site}, {direction} ({reading})")
        click = common.new_click(common.heatmap(fig, "patching_layer_pos", grid, run),
                                 "patching_layer_pos")
        if click:
            clicked = {"site": site, "by_pos": True, "direction": direction,
                       "layer": int(click["row"]), "head": None, "pos": int(click["col"])}

    st.subheader("Layer × head (all positions)")
    heads_all = here[here["head"].notna() & ~here["by_pos"]]
    sites = list(dict.fromkeys(heads_all["site"]))
    if not sites:
        st.info(f"No layer × head grid was computed for direction {direction}.")
    else:
        common.from_url("head_site", "patching_site_heads", sites)
        site = st.selectbox("Head site", sites, key="patching_site_heads",
                            help="z: the head's output; q / k / v: its inputs; pattern: its "
                                 "attention pattern")
        url["head_site"] = site
        grid = heads_all[heads_all["site"] == site]
        fig = patching_figure(
            grid, rows="layer", cols="head", value=value,
            zrange=zrange, selected=outline(shown, site, False, "layer", "head"),
            title=f"Layer × head: {site}, all positions, {direction} ({reading})")
        click = common.new_click(common.heatmap(fig, "patching_layer_head", grid, run),
                                 "patching_layer_head")
        if click:
            clicked = {"site": site, "by_pos": False, "direction": direction,
                       "layer": int(click["row"]), "head": int(click["col"]), "pos": None}

    st.subheader("Head × position (one layer)")
    heads_pos = here[here["head"].notna() & here["by_pos"]]
    if heads_pos.empty:
        st.info(f"No head × position grid was computed for direction {direction}.")
    else:
        c1, c2 = st.columns(2)
        sites = list(dict.fromkeys(heads_pos["site"]))
        layers = sorted(int(x) for x in heads_pos["layer"].unique())
        common.from_url("head_pos_site", "patching_site_head_pos", sites)
        common.from_url("layer", "patching_layer", layers)
        site = c1.selectbox("Head site", sites, key="patching_site_head_pos")
        layer = c2.selectbox("Layer", layers, format_func=layer_label, key="patching_layer")
        url.update(head_pos_site=site, layer=str(layer))
        grid = heads_pos[(heads_pos["site"] == site) & (heads_pos["layer"] == layer)]
        fig = patching_figure(
            grid, rows="head", cols="pos", value=value, zrange=zrange,
            selected=outline(shown, site, True, "head", "pos", layer), **marks,
            title=f"Head × position: {layer_label(layer)} {site}, {direction} ({reading})")
        click = common.new_click(common.heatmap(fig, "patching_head_pos", grid, run),
                                 "patching_head_pos")
        if click:
            clicked = {"site": site, "by_pos": True, "direction": direction, "layer": layer,
                       "head": int(click["row"]), "pos": int(click["col"])}

if clicked is not None:
    st.session_state["patching_cell"] = clicked
    st.rerun()  # redraw the heatmaps with the new cell outlined
if cell is not None:
    st.session_state["patching_cell"] = cell
common.to_url(value=value, direction=direction, scale=scale,
              cell=None if cell is None else cell_code(cell), **url)

with details:
    st.subheader(f"Selected: {cell_label(shown, labels)}")
    row = rows_of(P, shown).iloc[0]
    st.caption(f"effect {row['effect']:.3f} ({EFFECT_READING[direction]}) · mean patched "
               f"metric {row['value']:.3f}"
               + ("" if cell is not None else " · the strongest head by effect, until you "
                                               "click a cell"))
    stored = common.read(run, schema.PATCHING_VALUES, stage)
    if stored is not None:
        values, metadata = stored
        grid = schema.grid_key(shown["site"], shown["by_pos"], shown["direction"])
        keys = schema.prompt_keys(grid)
        if keys["values"] not in values:
            st.info(f"`{schema.PATCHING_VALUES.at(stage)}` has no per-prompt values for grid "
                    f"{grid}.")
        else:
            axes = json.loads(metadata.get(grid, "[]"))
            idx = tuple(shown[a] for a in axes if a != "batch")
            if value == "effect":  # each prompt by its own clean and corrupted metric
                per_prompt = directed_effect(values[keys["normalized"]][idx], direction)
                clean, corrupted = (1.0, 0.0) if direction == "denoise" else (0.0, 1.0)
                x_title = f"effect per prompt ({EFFECT_READING[direction]}, each prompt by " \
                          "its own clean and corrupted metric)"
            else:
                per_prompt = values[keys["values"]][idx]
                clean = float(values[keys["clean"]].mean())
                corrupted = float(values[keys["corrupted"]].mean())
                x_title = summary.get("metric", "patched metric")
            fig = effect_distribution_figure(
                per_prompt.astype(float), clean=clean, corrupted=corrupted, x_title=x_title,
                title=f"Effect over {len(per_prompt)} prompts")
            common.chart(st, fig, key="patching_distribution")
    if shown.get("head") is None:
        st.info("Attention patterns are shown for head cells: click a cell of the layer × head "
                "or head × position heatmap.")
    elif task is None:
        st.info("This run records no task: no prompts to show attention on.")
    else:
        loaded = common.model_of(run, task)
        if loaded is not None:
            prompts = common.run_prompts(run, task)
            common.from_url("prompt", "patching_prompt", range(len(prompts)))
            i = st.selectbox("Prompt", range(len(prompts)), key="patching_prompt",
                             format_func=lambda i: task.display(*prompts[i]))
            common.to_url(prompt=str(i))
            a, b = prompts[i]
            pattern, tokens = common.attention_pattern(
                loaded, common.model_key(run), common.task_key(task), a, b, shown["layer"],
                shown["head"])
            head = Component("head", shown["layer"], shown["head"]).name
            common.chart(st, attention_pattern_figure(
                pattern, tokens, title=f"Attention of {head} on {task.display(a, b)}",
                mark_query=summary.get("metric_pos"),
                mark_label=f"query of {summary.get('metric', 'the metric')}"),
                key="patching_attention")

if st.toggle("Every site side by side, on one scale", key="patching_panels",
             help="Drawn on demand: two more figures make every change on this page slower"):
    for part, cols, what, key in (
            (here[here["head"].isna() & here["by_pos"]], "pos", "layer × position",
             "patching_panels_resid"),
            (here[here["head"].notna() & ~here["by_pos"]], "head", "layer × head, all positions",
             "patching_panels_heads")):
        sites = list(dict.fromkeys(part["site"]))
        if sites:
            common.chart(st, patching_panels_figure(
                part, sites, rows="layer", cols=cols, value=value, zrange=zrange,
                title=f"{what}: {', '.join(sites)}, {direction} ({reading})"), key=key)

st.divider()
st.subheader(f"Prompts behind {cell_label(shown, labels)}")
stored, pairs = common.read(run, schema.PATCHING_VALUES, stage, quiet=True), \
    common.read(run, schema.PAIRS, stage, quiet=True)
grid_key = schema.grid_key(shown["site"], shown["by_pos"], shown["direction"])
if stored is None or pairs is None or task is None or \
        schema.prompt_keys(grid_key)["values"] not in stored[0]:
    st.info(f"This experiment stores no per-pair values for {grid_key} (needs "
            f"`{schema.PATCHING_VALUES.at(stage)}` and `{schema.PAIRS.at(stage)}`).")
else:
    values, metadata = stored
    keys, axes = schema.prompt_keys(grid_key), json.loads(metadata.get(grid_key, "[]"))
    table = prompt_rows(values, keys, tuple(shown[a] for a in axes if a != "batch"),
                        direction, pairs[0], task)
    st.caption("Each minimal pair, sorted by this cell's effect on it (each pair by its own "
               "clean and corrupted metric; empty where the corruption does not move it). "
               "Select a row to see that pair's own heatmap and its clean vs corrupted "
               "attention.")
    event = st.dataframe(table, hide_index=True, key="patching_pairs", on_select="rerun",
                         selection_mode="single-row", height=280)
    chosen = event.selection.rows if event is not None else []
    if chosen:
        pair = int(table.iloc[chosen[0]]["pair"])
        row = table.iloc[chosen[0]]
        left, right = st.columns(2)
        with left:
            grid, rows_axis, cols_axis = prompt_grid(values, keys, axes, shown, pair, direction,
                                                     labels)
            common.chart(st, patching_figure(
                grid, rows=rows_axis, cols=cols_axis, value="effect", zrange=zrange if
                value == "effect" else (-1.0, 1.0), **(marks if cols_axis == "pos" else {}),
                selected=(shown[rows_axis], shown[cols_axis]),
                title=f"Pair {pair}: {row['clean']} vs {row['corrupted']} ({reading})"),
                key="patching_pair_heatmap")
        with right:
            loaded = common.model_of(run, task) if shown.get("head") is not None else None
            if loaded is not None:
                for name, side in (("clean", "clean"), ("corrupted", "corrupt")):
                    a, b = int(pairs[0][f"{side}_a"][pair]), int(pairs[0][f"{side}_b"][pair])
                    pattern, tokens = common.attention_pattern(
                        loaded, common.model_key(run), common.task_key(task), a, b,
                        shown["layer"], shown["head"])
                    common.chart(st, attention_pattern_figure(
                        pattern, tokens, mark_query=summary.get("metric_pos"),
                        title=f"{Component('head', shown['layer'], shown['head']).name} on the "
                              f"{name} prompt {task.display(a, b)}"),
                        key=f"patching_pair_{side}")
            elif shown.get("head") is None:
                st.info("Clean vs corrupted attention is shown for head cells.")

st.divider()
st.subheader("Ranking and knockout")
left, right = st.columns(2)
with left:
    ranking = common.read(run, schema.RANKING, stage)
    if ranking is not None:
        st.dataframe(ranking, hide_index=True, key="patching_ranking")
with right:
    knockout = common.read(run, schema.KNOCKOUT, stage)
    if knockout is not None and len(knockout):
        common.chart(st, knockout_figure(knockout), key="patching_knockout")
