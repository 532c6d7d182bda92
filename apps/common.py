"""The explorer's shared frame: runs directory, run and experiment pickers, cached readers,
the run's model, and cached calls of the library's live analyses on a few prompts.

Streamlit puts only ``apps/`` on ``sys.path``: views import this module as ``common``.
Every artifact is found through `arithinterp.schema`. Tables and tensors go through
``st.cache_data`` (keyed by run folder, artifact and file mtime, so a rewritten artifact is
re-read); the model through ``st.cache_resource`` (keyed by the run's weights). Nothing
here trains or writes into a run. A missing artifact is an ``st.info`` naming it and the
stage that makes it; an unreadable one is an ``st.error``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch

from arithinterp import schema
from arithinterp.catalog import list_runs
from arithinterp.runs import RunDir
from arithinterp.schema import Artifact
from arithinterp.stages.job import read_job
from arithinterp.stages.registry import stage_key
from arithinterp.tasks import Task
from arithinterp.viz.attribution import logit_lens_figure
from arithinterp.viz.common import token_labels

torch.set_num_threads(1)  # tiny forward passes; more threads only add overhead

RUNS_ENV = "ARITHINTERP_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
N_PROMPTS = 16  # prompts offered for live views
OPEN_RUN = "_open_run"  # a run a page asks the picker to show on the next rerun
STAGE_HINTS = {
    schema.MODEL: "the run records no model stage",
    schema.EVALUATE: "run the main job (`arithinterp demo`) to evaluate the model",
    schema.LOCALIZE: "run `arithinterp localize` on this run's model (or the demo with "
                     "localization) to produce it",
    schema.PROBES: "run the probe stage on this run (`arithinterp probe`, probes/*.py) to "
                   "produce probe tables",
    schema.FOURIER: "run the Fourier analysis on this run (`arithinterp probe`) to produce "
                    "spectra",
}


# ---- runs directory and run picker -----------------------------------------------------------
def runs_dir(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Path:
    """Runs folder: ``--runs-dir X`` after ``--``, else $ARITHINTERP_RUNS_DIR, else the first
    script argument (``streamlit run apps/explorer.py -- runs``), else ``runs/``."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    args = argv[1:]
    for i, arg in enumerate(args):
        if arg == "--runs-dir" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--runs-dir="):
            return Path(arg.split("=", 1)[1])
    if environ.get(RUNS_ENV):
        return Path(environ[RUNS_ENV])
    # a bare argument only counts under `streamlit run explorer.py` (not e.g. under pytest)
    if argv and Path(argv[0]).name == "explorer.py" and args and not args[0].startswith("-"):
        return Path(args[0])
    return Path(DEFAULT_RUNS_DIR)


def pick_run() -> RunDir | None:
    """The sidebar run picker shared by every page; the choice is kept in ``?run=``."""
    root = runs_dir()
    st.sidebar.caption(f"Runs folder: `{root}`")
    include = st.sidebar.toggle("Include unfinished and damaged runs", key="include_incomplete")
    runs = list_runs(root, include_incomplete=include)
    st.session_state["_run_dir"] = None
    if not runs:
        where = "does not exist" if not root.is_dir() else "holds no " + (
            "runs" if include else "finished runs")
        st.sidebar.error(f"The runs folder `{root}` {where}. Pass another with "
                         f"`streamlit run apps/explorer.py -- --runs-dir DIR` or ${RUNS_ENV}.")
        return None
    names = [r.name for r in runs]
    if (opened := st.session_state.pop(OPEN_RUN, None)) in names:  # a page asked for it
        st.session_state["run"] = opened
    if st.session_state.get("run") not in names:
        wanted = st.query_params.get("run")
        st.session_state["run"] = wanted if wanted in names else names[-1]
        if wanted is not None and wanted not in names:
            st.session_state["_run_fallback"] = (wanted, names[-1])
    name = st.sidebar.selectbox("Run", names, key="run",
                                help="Runs are sorted by creation time (newest last).")
    fallback = st.session_state.get("_run_fallback")
    if fallback and fallback[1] == name:  # until another run is picked
        st.sidebar.warning(f"No {'' if include else 'finished '}run named `{fallback[0]}` in "
                           f"`{root}`: showing `{name}` instead.")
    else:
        st.session_state.pop("_run_fallback", None)
    st.query_params["run"] = name
    run = runs[names.index(name)]
    stages = ", ".join(run.manifest["stages"]) or "none"
    st.sidebar.caption(f"{run.status} · stages: {stages}")
    for problem in run.problems():
        st.sidebar.warning(problem)
    st.session_state["_run_dir"] = str(run.dir)
    return run


def from_url(param: str, key: str, allowed) -> None:
    """Seed widget `key` from ``?param=`` once per session with the allowed option that the
    value spells (options are matched by ``str``, so numbers work), so a shared address
    reopens the same view; the page writes its choice back (`to_url`)."""
    wanted = st.query_params.get(param)
    if key in st.session_state or wanted is None:
        return
    for option in allowed:
        if str(option) == wanted:
            st.session_state[key] = option
            return


def to_url(**params: str | None) -> None:
    """Keep these choices in the address (None removes one)."""
    for name, value in params.items():
        if value is None:
            st.query_params.pop(name, None)
        else:
            st.query_params[name] = value


def provenance(run: RunDir, stage: str | None = None) -> None:
    """An expander with what made the run: commit, versions, seeds and the configs of its
    stages (only `stage`'s when given), read from the manifest."""
    m = run.manifest
    job = m["config"]["job"]
    keys = [stage_key(c) for c in read_job(m["config"])]
    shown = [(k, e) for k, e in zip(keys, job, strict=True) if stage is None or k == stage]
    with st.expander("Provenance: configs, seeds, package versions, commit"):
        st.markdown(f"commit `{m.get('git_commit') or 'unknown (not a git checkout)'}` · "
                    f"created {m['created'][:19]} · seeds `{json.dumps(m.get('seeds', {}))}`")
        st.dataframe([{"package": k, "version": v} for k, v in m["package_versions"].items()],
                     hide_index=True, key=f"provenance_versions_{stage or 'run'}")
        for key, entry in shown:
            st.markdown(f"**{key}** — stage `{entry['stage']}`")
            st.json(entry["config"], expanded=stage is not None)


def open_run(name: str, page: str = "views/overview.py") -> None:
    """Show run `name` on `page` (the picker selects it on the rerun this starts)."""
    st.session_state[OPEN_RUN] = name
    st.switch_page(page)


def current_run() -> RunDir:
    """The run the sidebar picked; stops the page with a message when there is none."""
    path = st.session_state.get("_run_dir")
    if not path:
        st.info("No run to show: pick a runs folder that holds runs (see the sidebar).")
        st.stop()
    try:
        return RunDir.open(path)
    except (OSError, ValueError) as e:
        st.error(f"Cannot open run `{path}`: {e}")
        st.stop()


def pick_experiment(run: RunDir, family: str, *, key: str) -> str | None:
    """The stage key of one experiment of `family` ('localize'): a picker when the run holds
    several, None (after an st.info naming the command) when it holds none."""
    names = schema.experiments(run.manifest["stages"], family)
    if not names:
        st.info(f"Run **{run.name}** has no `{family}/` results: {STAGE_HINTS[family]}.")
        return None
    if len(names) > 1:
        from_url("experiment", key, names)
        name = st.selectbox("Experiment", names, key=key,
                            help="Each localization experiment corrupts one thing (an operand "
                                 "digit, or the carry into one answer digit).")
    else:
        name = names[0]
    to_url(experiment=name if len(names) > 1 else None)
    return f"{family}/{name}"


# ---- artifacts -------------------------------------------------------------------------------
def _stamp(path: Path) -> int:
    return path.stat().st_mtime_ns


def missing_message(run: RunDir, relpath: str) -> str:
    """'Run X has no `relpath`: <how to make it>'."""
    hint = STAGE_HINTS.get(schema.stage_family(relpath), "")
    return f"Run **{run.name}** has no `{relpath}`" + (f": {hint}." if hint else ".")


@st.cache_data(show_spinner=False, max_entries=128)
def _read(run_dir: str, file: str, kind: str, stage: str, stamp: int) -> Any:
    run = RunDir.open(run_dir)
    artifact = Artifact(file, kind)  # type: ignore[arg-type]
    data = run.load(artifact, stage)
    if kind == "tensors":
        return {k: v.numpy() for k, v in data.items()}, run.tensor_metadata(artifact, stage)
    return data


def read(run: RunDir, artifact: Artifact, stage: str, *, quiet: bool = False) -> Any | None:
    """An artifact of the run (tensors: (arrays, metadata)), or None after an st.info (unless
    quiet) when the run lacks it; an unreadable artifact is an st.error, never a traceback."""
    path = run.dir / artifact.at(stage)
    if not path.is_file():
        if not quiet:
            st.info(missing_message(run, artifact.at(stage)))
        return None
    try:
        return _read(str(run.dir), artifact.file, artifact.kind, stage, _stamp(path))
    except Exception as e:  # an unreadable artifact is a message, never a traceback
        st.error(f"Cannot read `{artifact.at(stage)}` of run {run.name}: "
                 f"{type(e).__name__}: {e}")
        return None


def logit_lens(run: RunDir, stage: str, *, key: str) -> None:
    """An experiment's logit lens with its value switch (nothing when the run lacks it)."""
    lens = read(run, schema.LOGIT_LENS, stage)
    if lens is not None and len(lens):
        value = st.radio("Value", ["accuracy", "mean_prob", "mean_rank"], horizontal=True,
                         key=f"{key}_value")
        chart(st, logit_lens_figure(lens, value=value), key=key)


def stages_of(run: RunDir, family: str) -> list[str]:
    """The run's stage keys of one family, e.g. every 'probes/<name>'."""
    return [k for k in run.manifest["stages"] if schema.stage_family(k) == family]


# ---- task and model --------------------------------------------------------------------------
def task_of(run: RunDir, stage: str | None = None) -> Task | None:
    """The task of a stage (a localization may override the model's), else the model's."""
    candidates = []
    if stage is not None:
        summary = read(run, schema.LOCALIZE_SUMMARY, stage, quiet=True) or {}
        candidates.append(summary.get("task_spec"))
    cfg = read(run, schema.CHECKPOINT_CONFIG, schema.MODEL, quiet=True) or {}
    candidates.append(cfg.get("task"))
    for cand in candidates:
        if isinstance(cand, dict):
            try:
                return schema.from_json(Task, cand)
            except ValueError:
                continue
    return None


def task_key(task: Task) -> str:
    """A hashable stand-in for a task in cache keys."""
    return json.dumps(asdict(task), sort_keys=True)


def task_from_key(key: str) -> Task:
    """The task a `task_key` stands for."""
    return schema.from_json(Task, json.loads(key))


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load_model(run_dir: str, task_json: str, stamp: int):
    from arithinterp.checkpoints import load_model

    return load_model(run_dir, device="cpu").with_task(task_from_key(task_json))


def model_of(run: RunDir, task: Task | None = None):
    """The run's model (loaded once per checkpoint, on the CPU, for `task`: default the
    model's own), or None after a message."""
    task = task or task_of(run)
    weights = run.dir / schema.WEIGHTS.at(schema.MODEL)
    if task is None:
        st.info(f"Run **{run.name}** records no model with a task: live views (attention "
                "patterns, the playground) need one.")
        return None
    if not weights.is_file():
        st.error(f"The checkpoint of run {run.name} is missing (`{weights}`): live views need "
                 "the model the run was made with.")
        return None
    try:
        return _load_model(str(run.dir), task_key(task), _stamp(weights))
    except Exception as e:  # a checkpoint we cannot rebuild is a message, not a traceback
        st.error(f"Cannot load the model of run {run.name}: {e}")
        return None


def model_key(run: RunDir) -> str:
    """Cache key of the run's model: its folder and weights' mtime."""
    weights = run.dir / schema.WEIGHTS.at(schema.MODEL)
    return f"{run.dir}:{_stamp(weights) if weights.is_file() else 0}"


# ---- problems --------------------------------------------------------------------------------
def run_prompts(run: RunDir, task: Task, n: int = N_PROMPTS) -> list[tuple[int, int]]:
    """A few of the run's problems: its evaluation set, else a seeded sample of the task."""
    ex = read(run, schema.EVAL_EXAMPLES, schema.EVALUATE, quiet=True)
    if ex is not None and len(ex):
        valid = [(int(a), int(b)) for a, b in zip(ex["a"], ex["b"], strict=True)
                 if task.is_valid(int(a), int(b))]
        if valid:
            return valid[:n]
    return _sample_prompts(task_key(task), n)


@st.cache_data(show_spinner=False)
def _sample_prompts(task_json: str, n: int) -> list[tuple[int, int]]:
    from arithinterp.tasks.data import make_test_split

    test = make_test_split(task_from_key(task_json), n, seed=1)
    return list(zip(test.a.tolist(), test.b.tolist(), strict=True))


@st.cache_data(show_spinner=False)
def probe_targets(task_json: str, a: tuple[int, ...], b: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Every probe target's value (digits, carries, running sums ...) for problems (a, b)."""
    from arithinterp.probes.targets import make_targets
    from arithinterp.tasks import make_dataset

    data = make_dataset(task_from_key(task_json), torch.tensor(a), torch.tensor(b))
    return {t.name: t.values.numpy() for t in make_targets(data)}


# ---- live forward passes (cached per model, task and prompt) ----------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def layer_patterns(_loaded, model_key: str, task_json: str, problems: tuple, layer: int
                   ) -> tuple[np.ndarray, list[str]]:
    """Every head of `layer`: its attention pattern averaged over `problems` ((a, b) pairs;
    one problem gives that prompt's patterns) [head, query, key], with the first problem's
    token labels."""
    from arithinterp.analysis.attention import compute_layer_patterns
    from arithinterp.tasks import make_dataset

    task = task_from_key(task_json)
    data = make_dataset(task, torch.tensor([a for a, _ in problems]),
                        torch.tensor([b for _, b in problems]))
    patterns = compute_layer_patterns(_loaded.model, data.tokens, layer).numpy()
    return patterns, token_labels(task.vocab.token_strings(data.tokens[0]),
                              task.position_labels())


def attention_pattern(loaded, model_key: str, task_json: str, a: int, b: int, layer: int,
                      head: int) -> tuple[np.ndarray, list[str]]:
    """One head's attention pattern on the rendered problem (a, b), with token labels."""
    patterns, labels = layer_patterns(loaded, model_key, task_json, ((a, b),), layer)
    return patterns[head], labels


def experiment_pairs(run: RunDir, stage: str, task: Task):
    """The minimal pairs a localization stored (PromptPairs), or None after a message."""
    from arithinterp.analysis.suite import task_pairs

    stored = read(run, schema.PAIRS, stage)
    if stored is None:
        return None
    summary = read(run, schema.LOCALIZE_SUMMARY, stage, quiet=True) or {}
    return task_pairs(task, stored[0], summary.get("change", "?"))


@st.cache_data(show_spinner="Reading the neurons ...")
def neuron_views(_loaded, model_key: str, stage_key: str, _pairs, digit: int, layer: int,
                 top: int) -> tuple:
    """`compute_neuron_ranking` of MLP `layer` toward the answer digit on a localization's
    pairs (keyed by run and stage)."""
    from arithinterp.analysis.neurons import compute_neuron_ranking
    from arithinterp.core.metrics import answer_metric

    return compute_neuron_ranking(_loaded.model, _pairs, answer_metric(_pairs, digit), layer,
                                  top=top)


@st.cache_data(show_spinner=False)
def neuron_profile(_loaded, model_key: str, task_json: str, n: int, layer: int, neuron: int,
                   pos: int) -> tuple:
    """One neuron on `n` of the task's held-out-style problems: its top-activating problems,
    its activations, and every probe target's values on the same problems."""
    from arithinterp.analysis.neurons import neuron_activations, top_activating
    from arithinterp.tasks.data import make_test_split

    data = make_test_split(task_from_key(task_json), n, seed=1)
    acts = neuron_activations(_loaded.model, data, layer, neuron, pos)
    targets = probe_targets(task_json, tuple(data.a.tolist()), tuple(data.b.tolist()))
    return top_activating(_loaded.model, data, layer, neuron, pos, k=15), acts, targets


def cell_from_points(points: list[dict]) -> dict | None:
    """The heatmap cell a click selected: the first point of the overlay ('cells') trace.

    Returns {'row': key, 'col': key} from the point's customdata (set by viz), or None.
    """
    for p in points or []:
        custom = p.get("customdata")
        if isinstance(custom, list | tuple) and len(custom) >= 2:
            return {"row": custom[0], "col": custom[1]}
    return None


def new_points(event, chart_key: str) -> list[dict]:
    """The points newly selected in chart `chart_key` since the last rerun, else [].

    A chart keeps its selection across reruns; only a changed selection counts as a click,
    so the latest click on any chart wins.
    """
    points = list(getattr(getattr(event, "selection", None), "points", None) or [])
    seen_key = f"_seen_{chart_key}"
    signature = json.dumps(points, sort_keys=True, default=str)
    if st.session_state.get(seen_key) == signature:
        return []
    st.session_state[seen_key] = signature
    return points


def new_click(event, chart_key: str) -> dict | None:
    """A heatmap cell newly clicked in chart `chart_key` since the last rerun, else None."""
    return cell_from_points(new_points(event, chart_key))


def chart(where, fig, *, key: str, **kwargs):
    """A plotly figure in `where` (st or a column) whose camera button saves SVG, named
    after the chart, so a figure goes into a paper as vector graphics."""
    config = {"toImageButtonOptions": {"format": "svg", "filename": key}, "displaylogo": False}
    return where.plotly_chart(fig, key=key, config=config, **kwargs)


def heatmap(fig, key: str, data=None, run: RunDir | None = None):
    """A clickable heatmap (viz overlay): on_select='rerun', selection by points; with `data`
    (the table it draws) a button below saves that table as CSV."""
    event = chart(st, fig, key=key, on_select="rerun", selection_mode="points",
                  width="stretch")
    if data is not None:
        st.download_button("Download the data (CSV)", data.to_csv(index=False),
                           file_name=f"{run.name + '-' if run else ''}{key}.csv",
                           mime="text/csv", key=f"{key}_csv")
    return event

