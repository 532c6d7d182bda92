"""Playground: type a problem, see the model's greedy answer, its top predictions per answer
position, and a live patching heatmap against a corrupted partner (one operand digit
changed). Everything is computed on the fly from the run's model (loaded once)."""


import common
import streamlit as st
import torch

from arithinterp import viz
from arithinterp.tasks.corrupt import corrupt_problem


@st.cache_data(show_spinner="Running the model…", max_entries=256)
def prediction(_loaded, model_key: str, task_json: str, a: int, b: int):
    """The model's greedy answer to (a, b) and its top-3 next tokens per position."""
    from arithinterp.evaluate import predict_problem

    return predict_problem(_loaded.model, common.task_from_key(task_json), a, b)


@st.cache_data(show_spinner="Patching…", max_entries=256)
def live_patching(_loaded, model_key: str, task_json: str, clean: tuple[int, int],
                  corrupt: tuple[int, int], site: str, change: str):
    """Exact patching (denoising) of one clean / corrupt pair: the tidy grid and baselines."""
    from arithinterp.analysis.metrics import answer_metric, default_digit
    from arithinterp.analysis.patching import PatchSpec, sweep_patching
    from arithinterp.tasks import PromptPairs, make_dataset

    task = common.task_from_key(task_json)
    pairs = PromptPairs(make_dataset(task, torch.tensor([clean[0]]), torch.tensor([clean[1]])),
                        make_dataset(task, torch.tensor([corrupt[0]]),
                                     torch.tensor([corrupt[1]])), change)
    digit = default_digit(pairs)
    metric = answer_metric(pairs, digit)
    result = sweep_patching(_loaded.model, pairs, PatchSpec(site), metric)
    frame = result.to_frame(allow_unnormalized=True)
    info = {"digit": digit, "metric": metric.label, "clean": float(result.clean.mean()),
            "corrupted": float(result.corrupted.mean()),
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
    a, b = common.parse_problem(text, task)
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
operand = c1.radio("Corrupt operand", ["a", "b"], horizontal=True, key="playground_operand")
width = task.digits_a if operand == "a" else task.digits_b
digit = c2.selectbox("Digit (0 = least significant)", range(width), key="playground_digit",
                     index=min(1, width - 1))
site = c3.radio("Site", ["z", "resid_pre"], horizontal=True, key="playground_site",
                format_func={"z": "heads (z) × position",
                             "resid_pre": "residual stream × position"}.get)
try:
    partner = corrupt_problem(task, a, b, operand=operand, digit=digit, seed=0)
except ValueError as e:
    st.warning(f"No corrupted partner: {e}")
    st.stop()
frame, info = live_patching(loaded, key, tkey, (a, b), partner, site, f"{operand}_{digit}")
st.markdown(f"Corrupted partner: `{task.display(*partner)}` (clean `{task.display(a, b)}`); "
            f"metric **{info['metric']}**: clean {info['clean']:.3f}, corrupted "
            f"{info['corrupted']:.3f}.")
value = "normalized" if info["normalized"] else "value"
if not info["normalized"]:
    st.warning("The corruption barely moves the metric for this problem: showing the raw "
               "metric instead of the normalized effect.")
rows = "component" if site == "z" else "layer"
fig = viz.patching_figure(frame, rows=rows, cols="pos", value=value,
                          title=f"Live patching: {site} × position, {task.display_problem(a, b)}= "
                                f"vs {task.display_problem(*partner)}= ({value})")
common.heatmap(fig, "playground_heatmap")
