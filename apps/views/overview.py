"""Overview: the run's task and model, held-out accuracy and the training curve."""

import common
import pandas as pd
import streamlit as st

from arithinterp import schema
from arithinterp.viz.evaluation import accuracy_by_carries_figure, digit_accuracy_figure
from arithinterp.viz.training import training_curve_figure

run = common.current_run()
st.title(f"Run {run.name}")
m = run.manifest
st.caption(f"{m['status']} · created {m['created'][:19]} · commit "
           f"{(m['git_commit'] or 'unknown')[:10]} · arithinterp "
           f"{m['package_versions'].get('arithinterp', '?')}")

task = common.task_of(run)
left, right = st.columns(2)
with left:
    st.subheader("Task")
    if task is None:
        st.info(f"Run **{run.name}** records no task (no "
                f"`{schema.CHECKPOINT_CONFIG.at(schema.MODEL)}`).")
    else:
        a, b = task.example_problem()
        st.markdown(f"**{task.name}** — `{task.display(a, b)}` "
                    f"({task.seq_len} tokens; answer width {task.answer_width})")
        st.caption("positions: " + " ".join(task.position_labels()))
with right:
    st.subheader("Model")
    cfg = common.read(run, schema.CHECKPOINT_CONFIG, schema.MODEL, quiet=True)
    if cfg is None:
        st.info(common.missing_message(run, schema.CHECKPOINT_CONFIG.at(schema.MODEL)))
    else:
        spec = cfg.get("model", {})
        st.markdown(", ".join(f"{k} **{v}**" for k, v in spec.items() if v is not None))
    source = run.stage_summary(schema.MODEL).get("source")
    if source is not None:
        st.caption(f"model from `{source}`")

st.subheader("Held-out accuracy")
summary = common.read(run, schema.EVAL_SUMMARY, schema.EVALUATE)
if summary is not None:
    cols = st.columns(3)
    cols[0].metric("exact match", f"{summary['exact_match']:.3f}")
    cols[1].metric("sequence match", f"{summary.get('sequence_match', float('nan')):.3f}")
    cols[2].metric("problems", summary.get("n", "?"))
    left, right = st.columns(2)
    with left:
        common.chart(st, digit_accuracy_figure(summary["digit_accuracy"]),
                        key="overview_digits")
    with right:
        by_carries = common.read(run, schema.EVAL_BY_CARRIES, schema.EVALUATE)
        if by_carries is not None and len(by_carries):
            common.chart(st, accuracy_by_carries_figure(by_carries), key="overview_carries")
    examples = common.read(run, schema.EVAL_EXAMPLES, schema.EVALUATE, quiet=True)
    if examples is not None:
        wrong = examples[~examples["correct"]]
        with st.expander(f"Wrong answers ({len(wrong)} of {len(examples)})"):
            st.dataframe(wrong.sort_values(["n_wrong_digits", "n_carries"], ascending=False)
                         .head(50), hide_index=True)

st.subheader("Training")
curve = common.read(run, schema.TRAINING_CURVE, schema.MODEL, quiet=True)
if curve is None:
    st.info(f"Run **{run.name}** has no `{schema.TRAINING_CURVE.at(schema.MODEL)}` (a "
            "pretrained model or a checkpoint without a metrics log).")
elif curve.empty:
    st.info("The training curve is empty.")
else:
    common.chart(st, training_curve_figure(curve), key="overview_training")

common.provenance(run)
with st.expander("Stages and artifacts"):
    stages = pd.DataFrame([{"stage": k, "kind": v.get("stage"), "status": v.get("status"),
                            "finished": v.get("finished"), "error": v.get("error")}
                           for k, v in m["stages"].items()])
    st.dataframe(stages, hide_index=True)
    st.dataframe(pd.DataFrame([{"artifact": k, **v} for k, v in m["artifacts"].items()]),
                 hide_index=True)
