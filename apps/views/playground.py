"""Playground: type a problem, see the model's greedy answer, its top predictions per answer
position, and a live patching heatmap against a corrupted partner (one operand digit
changed, or typed), at any site and in either direction; a click on a cell drills down to
that component (its patched metric and, for a head, its attention on both prompts).
Everything is computed on the fly from the run's model (loaded once)."""


import common
import streamlit as st
import torch

from arithinterp.tasks.corrupt import corrupt_problem
from arithinterp.viz.attention import attention_pattern_figure
from arithinterp.viz.patching import patching_figure


@st.cache_data(show_spinner="Running the model…", max_entries=256)
def prediction(_loaded, model_key: str, task_json: str, a: int, b: int):
    """The model's greedy answer to (a, b) and its top-3 next tokens per position."""
    from arithinterp.evaluate import predict_problem

    return predict_problem(_loaded.model, common.task_from_key(task_json), a, b)


SITES = {"z": "heads (z)", "q": "heads' queries (q)", "k": "heads' keys (k)",
         "v": "heads' values (v)", "pattern": "heads' patterns", "resid_pre": "residual stream",
         "attn_out": "attention layers", "mlp_out": "MLPs"}


@st.cache_data(show_spinner="Patching…", max_entries=256)
def live_patching(_loaded, model_key: str, task_json: str, clean: tuple[int, int],
                  corrupt: tuple[int, int], site: str, change: str, direction: str):
    """Exact patching of one clean / corrupt pair by position: the tidy grid and baselines."""
    from arithinterp.analysis.patching import PatchSpec, sweep_patching
    from arithinterp.core.metrics import answer_metric, default_digit
    from arithinterp.tasks import PromptPairs, make_dataset

    task = common.task_from_key(task_json)
    pairs = PromptPairs(make_dataset(task, torch.tensor([clean[0]]), torch.tensor([clean[1]])),
                        make_dataset(task, torch.tensor([corrupt[0]]),
                                     torch.tensor([corrupt[1]])), change)
    digit = default_digit(pairs)
    metric = answer_metric(pairs, digit)
    result = sweep_patching(_loaded.model, pairs, PatchSpec(site), metric, direction=direction)
    frame = result.to_frame(allow_unnormalized=True)
    info = {"digit": digit, "metric": metric.label, "pos": metric.pos,
            "clean": float(result.clean.mean()), "corrupted": float(result.corrupted.mean()),
            "normalized": bool(frame["normalized"].notna().any())}
    return frame, info


run = common.current_run()
st.title("Playground")
task = common.task_of(run)
if task is None:
    st.info(f"Run **{run.name}** records no task: nothing to type a problem for.")
    st.stop()
loaded = common.model_of(run)
if loaded is None:
    st.stop()
key, tkey = common.model_key(run), common.task_key(task)
ex = common.run_prompts(run, task, 1)[0]
st.caption(f"Task **{task.name}**: type a problem such as `{task.display_problem(*ex)}`.")
text = st.text_input("Problem", value=task.display_problem(*ex), key="playground_problem")
try:
    a, b = task.parse_problem(text)
except ValueError as e:
    st.error(f"Invalid problem: {e}")
    st.stop()

out = prediction(loaded, key, tkey, a, b)
c1, c2, c3 = st.columns(3)
c1.metric("model's answer", out.answer, help=f"generated tokens: {out.generated}")
c2.metric("correct answer", out.correct_answer)
c3.metric("verdict", "correct" if out.correct else "wrong")
st.markdown(f"Generated: `{task.display_problem(a, b)}={out.generated}` · expected "
            f"`{task.display_problem(a, b)}={out.expected}`")
st.subheader("Top predictions per position")
st.dataframe(out.top, hide_index=True, key="playground_top")

st.subheader("Live patching against a corrupted partner")
c1, c2, c3 = st.columns(3)
how = c1.radio("Partner", ["change one digit", "type it"], horizontal=True,
               key="playground_partner")
site = c2.selectbox("Site", list(SITES), format_func=SITES.get, key="playground_site")
direction = c3.radio("Direction", ["denoise", "noise"], horizontal=True,
                     key="playground_direction",
                     help="denoise: clean activations into the partner's run; noise: the "
                          "partner's into the clean run")
if how == "type it":
    typed = st.text_input("Corrupted partner", key="playground_corrupt",
                          value=task.display_problem(a, b),
                          help="Any problem of the task whose answer differs from the clean "
                               "one's; the metric reads the first answer digit that differs")
    try:
        partner = task.parse_problem(typed)
    except ValueError as e:
        st.error(f"Invalid partner: {e}")
        st.stop()
    if task.metadata(*partner).answer == task.metadata(a, b).answer:
        st.error(f"The partner `{task.display(*partner)}` has the same answer as the clean "
                 "problem: there is no answer difference to patch.")
        st.stop()
    change = "typed"
else:
    c1, c2 = st.columns(2)
    operand = c1.radio("Corrupt operand", ["a", "b"], horizontal=True,
                       key="playground_operand")
    width = task.digits_a if operand == "a" else task.digits_b
    digit = c2.selectbox("Digit (0 = least significant)", range(width),
                         key="playground_digit", index=min(1, width - 1))
    try:
        partner = corrupt_problem(task, a, b, operand=operand, digit=digit, seed=0)
    except ValueError as e:
        st.warning(f"No corrupted partner: {e}")
        st.stop()
    change = f"{operand}_{digit}"
frame, info = live_patching(loaded, key, tkey, (a, b), partner, site, change, direction)
st.markdown(f"Corrupted partner: `{task.display(*partner)}` (clean `{task.display(a, b)}`); "
            f"metric **{info['metric']}**: clean {info['clean']:.3f}, corrupted "
            f"{info['corrupted']:.3f}.")
value = "effect" if info["normalized"] else "value"
if not info["normalized"]:
    st.warning("The corruption barely moves the metric for this problem: showing the raw "
               "metric instead of the effect.")
head_site = site in ("z", "q", "k", "v", "pattern")
rows = "component" if head_site else "layer"
fig = patching_figure(
    frame, rows=rows, cols="pos", value=value,
    zrange=(-1.0, 1.0) if value == "effect" else None,
    selected=st.session_state.get("playground_cell"),
    mark_pos=info["pos"], mark_label=info["metric"],
    title=f"Live patching: {site} × position, {direction}, {task.display_problem(a, b)}= vs "
          f"{task.display_problem(*partner)}= ({value})")
click = common.new_click(common.heatmap(fig, "playground_heatmap", frame, run),
                         "playground_heatmap")
if click:
    st.session_state["playground_cell"] = (click["row"], click["col"])
    st.rerun()
cell = st.session_state.get("playground_cell")
if cell is not None:
    row_key, pos = cell
    hit = frame[(frame["component" if head_site else "layer"] == row_key)
                & (frame["pos"] == pos)]
    if not hit.empty:
        r = hit.iloc[0]
        st.subheader(f"Selected: {r['component']} {site} at {r['token']}, {direction}")
        st.caption(f"patched metric {r['value']:.3f} (clean {info['clean']:.3f}, corrupted "
                   f"{info['corrupted']:.3f})"
                   + (f" · effect {r['effect']:.3f}" if info["normalized"] else ""))
        if head_site:
            left, right = st.columns(2)
            for col, (name, problem) in zip((left, right), (("clean", (a, b)),
                                                             ("partner", partner)),
                                            strict=True):
                pattern, tokens = common.attention_pattern(
                    loaded, key, tkey, *problem, int(r["layer"]), int(r["head"]))
                with col:
                    common.chart(st, attention_pattern_figure(
                        pattern, tokens, mark_query=info["pos"],
                        title=f"{r['component']} on the {name} {task.display(*problem)}"),
                        key=f"playground_attention_{name}")
