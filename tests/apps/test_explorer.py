"""The Streamlit explorer, every page through AppTest, against runs made by the real pipeline.

One module fixture trains a tiny 2-digit-addition model for a few steps and runs the main
job twice: `tiny` (model, evaluate, localize) and `bare` (no localize). Copies of them add a
run with probe and Fourier tables (`probed`) and one whose checkpoint is gone (`orphan`).
"""

import base64
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
import torch
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from arithinterp import schema

APPS = Path(__file__).resolve().parents[2] / "apps"
APP = APPS / "explorer.py"
PAGES = ["overview", "patching", "attribution", "attention", "compare", "neurons", "probes",
         "multiplication", "playground"]
LABELS = ["<bos>", "a1", "a0", "+", "b1", "b0", "=", "c0", "c1", "c2", "<eos>"]


@pytest.fixture(scope="module")
def runs_dir(demo_runs, tmp_path_factory):
    runs = tmp_path_factory.mktemp("explorer") / "runs"
    shutil.copytree(demo_runs[0], runs)
    shutil.copytree(runs / "bare", runs / "orphan")
    (runs / "orphan" / "model" / "model.safetensors").unlink()  # its checkpoint is gone
    return runs


@pytest.fixture
def open_page(runs_dir, monkeypatch):
    """AppTest of the explorer on one page of one run (fresh caches each time)."""

    def _open(page: str, run: str = "tiny", include: bool = False, query: dict | None = None,
              **state) -> AppTest:
        monkeypatch.setenv("ARITHINTERP_RUNS_DIR", str(runs_dir))
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(APP), default_timeout=30)
        at.query_params["run"] = run
        at.query_params.update(query or {})
        at.session_state["include_incomplete"] = include
        at.run()
        assert not at.exception, at.exception
        for key, value in state.items():
            at.session_state[key] = value
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return _open


@pytest.fixture
def open_run(monkeypatch):
    """AppTest of one page of run `name` in the runs folder `runs` (fresh caches)."""

    def _open(runs, name: str, page: str) -> AppTest:
        monkeypatch.setenv("ARITHINTERP_RUNS_DIR", str(runs))
        st.cache_data.clear()
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["run"] = name
        at.run()
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return _open


def figures(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by chart key (their element id ends in the key)."""
    return {el.proto.id.split("-", 2)[-1]: _decode(json.loads(el.proto.spec))
            for el in at.get("plotly_chart")}


def _decode(obj):
    """Plotly's JSON packs numeric arrays as {dtype, bdata[, shape]}: back to lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"])
            if "shape" in obj:
                arr = arr.reshape([int(n) for n in str(obj["shape"]).split(",")])
            return arr.tolist()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def cells(fig: dict) -> dict:
    return next(t for t in fig["data"] if t.get("meta") == "cells")


@pytest.fixture(scope="module")
def common_module():
    sys.path.insert(0, str(APPS))
    try:
        import common

        yield common
    finally:
        sys.path.remove(str(APPS))


# ---- the frame -------------------------------------------------------------------------------
def test_runs_dir_from_flag_env_or_argument(common_module):
    runs_dir = common_module.runs_dir
    assert runs_dir(["explorer.py", "--runs-dir", "a"], {"ARITHINTERP_RUNS_DIR": "b"}) == Path("a")
    assert runs_dir(["explorer.py", "--runs-dir=a"], {}) == Path("a")
    assert runs_dir(["explorer.py"], {"ARITHINTERP_RUNS_DIR": "b"}) == Path("b")
    assert runs_dir(["apps/explorer.py", "c"], {}) == Path("c")
    assert runs_dir(["pytest", "tests"], {}) == Path("runs")  # not under streamlit run


def test_run_picker_lists_finished_runs_and_follows_the_query(open_page):
    at = open_page("overview", run="bare")
    picker = at.selectbox(key="run")
    # the orphan's manifest names a weights file that is gone: flagged, not offered
    assert set(picker.options) == {"tiny", "bare"}
    assert picker.value == "bare" and at.title[0].value == "Run bare"
    picker.select("tiny").run()
    assert at.title[0].value == "Run tiny" and at.query_params["run"] == "tiny"


def test_an_empty_runs_folder_is_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("ARITHINTERP_RUNS_DIR", str(tmp_path / "nothing"))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert "does not exist" in at.sidebar.error[0].value
    assert "No run to show" in at.info[0].value


# ---- pages on a full run ---------------------------------------------------------------------
def test_overview_shows_task_accuracy_and_training_curve(open_page, runs_dir):
    at = open_page("overview")
    assert any("add2x2-reversed" in m for m in texts(at.markdown))
    summary = json.loads((runs_dir / "tiny" / "evaluate" / "summary.json").read_text())
    assert any("model from" in c for c in texts(at.caption))
    assert at.metric[0].label == "exact match"
    assert at.metric[0].value == f"{summary['exact_match']:.3f}"
    figs = figures(at)
    assert figs["overview_training"]["layout"]["title"]["text"] == "Training curve"
    assert [t["name"] for t in figs["overview_training"]["data"]][:2] == ["loss", "exact match"]
    assert figs["overview_digits"]["data"][0]["x"] == ["c0", "c1", "c2"]
    assert figs["overview_carries"]["data"][0]["type"] == "bar"


def test_patching_heatmaps_have_position_labels_and_one_cell_per_component(open_page):
    at = open_page("patching")
    figs = figures(at)
    layer_pos = figs["patching_layer_pos"]
    assert layer_pos["layout"]["title"]["text"] == \
        "Layer × position: resid_pre, denoise (effect = share of the clean metric restored)"
    assert layer_pos["data"][0]["x"] == LABELS and layer_pos["data"][0]["y"] == ["L0", "L1"]
    assert len(cells(layer_pos)["x"]) == 2 * len(LABELS)
    # denoising the whole residual stream at a1 (the corrupted digit) in layer 0 restores clean
    row = cells(layer_pos)["customdata"][[c[:2] for c in cells(layer_pos)["customdata"]]
                                         .index([0, 1])]
    assert row[2] == pytest.approx(1.0, abs=1e-4)
    layer_head = figs["patching_layer_head"]
    assert layer_head["data"][0]["x"] == ["H0", "H1", "H2", "H3"]
    assert len(cells(layer_head)["x"]) == 8
    head_pos = figs["patching_head_pos"]
    assert head_pos["data"][0]["y"] == ["H0", "H1", "H2", "H3"]
    assert head_pos["data"][0]["x"] == LABELS and len(cells(head_pos)["x"]) == 4 * len(LABELS)
    # before any click, the strongest head is selected: its distribution and attention pattern
    assert any(s.startswith("Selected: L") for s in texts(at.subheader))
    assert figs["patching_distribution"]["data"][0]["type"] == "histogram"
    assert len(figs["patching_distribution"]["data"][0]["x"]) == 32
    assert figs["patching_attention"]["layout"]["title"]["text"].startswith("Attention of L")
    assert figs["patching_knockout"]["data"][0]["x"][:2] == ["none", "selected"]


def test_patching_metric_direction_and_layer_switches(open_page, runs_dir):
    at = open_page("patching")
    at.radio(key="patching_metric").set_value("value").run()
    table = pd.read_parquet(runs_dir / "tiny" / "localize" / "a1" / "patching.parquet")
    raw = table[(table["site"] == "resid_pre") & (table["direction"] == "denoise")]
    fig = figures(at)["patching_layer_pos"]
    assert fig["layout"]["title"]["text"].endswith("(raw metric)")
    assert fig["data"][0]["z"][1][7] == pytest.approx(
        raw[(raw["layer"] == 1) & (raw["pos"] == 7)]["value"].item())
    at.selectbox(key="patching_layer").select(1).run()
    assert figures(at)["patching_head_pos"]["layout"]["title"]["text"].startswith(
        "Head × position: L1 z")
    at.radio(key="patching_direction").set_value("noise").run()
    assert not at.exception
    figs = figures(at)
    assert "noise" in figs["patching_layer_pos"]["layout"]["title"]["text"]
    assert figs["patching_head_pos"]["layout"]["title"]["text"].startswith(
        "Head × position: L1 z, noise")  # the head x position grid has a noise version


def _cell_values(fig: dict) -> dict:
    return {tuple(c[:2]): c[2] for c in cells(fig)["customdata"]}


def test_noising_reads_as_an_effect_on_a_fixed_scale_with_the_metric_marked(open_page,
                                                                              runs_dir):
    at = open_page("patching")
    layer_pos = figures(at)["patching_layer_pos"]
    # one fixed range for every normalized heatmap by default, written on the colour bar
    for key in ("patching_layer_pos", "patching_layer_head", "patching_head_pos"):
        axis = figures(at)[key]["layout"]["coloraxis"]
        assert (axis["cmin"], axis["cmax"]) == (-1, 1) and "[-1, 1]" in \
            axis["colorbar"]["title"]["text"]
    # the metric is read at the position before c1 (logit_diff(c1) is predicted at c0)
    summary = json.loads((runs_dir / "tiny" / "localize" / "a1" / "summary.json").read_text())
    (line,) = [s for s in layer_pos["layout"]["shapes"] if s["type"] == "line"]
    assert line["x0"] == summary["metric_pos"] == LABELS.index("c0")
    at.radio(key="patching_scale").set_value("free").run()
    assert "cmin" not in figures(at)["patching_layer_pos"]["layout"]["coloraxis"]
    at.radio(key="patching_direction").set_value("noise").run()
    noise = _cell_values(figures(at)["patching_layer_pos"])
    table = pd.read_parquet(runs_dir / "tiny" / "localize" / "a1" / "patching.parquet")
    raw = table[(table["site"] == "resid_pre") & (table["direction"] == "noise")]
    # noising L0 resid_pre at <bos> changes nothing: effect 0, not the raw normalized 1
    bos = raw[(raw["layer"] == 0) & (raw["pos"] == 0)]
    assert bos["normalized"].item() == pytest.approx(1.0, abs=1e-4)
    assert noise[(0, 0)] == pytest.approx(0.0, abs=1e-4)
    # the strongest head under noising is the strongest under denoising, not the least needed
    heads = table[(table["site"] == "z") & ~table["by_pos"]]
    strongest = {d: heads[heads["direction"] == d].pipe(
        lambda h: h.loc[h["effect"].abs().idxmax()]) for d in ("denoise", "noise")}
    assert strongest["noise"]["component"] == strongest["denoise"]["component"]
    top = strongest["noise"]
    assert f"Selected: {top['component']} z (all positions), noise" in texts(at.subheader)


def test_every_site_side_by_side_shares_one_scale(open_page, runs_dir):
    at = open_page("patching")
    assert "patching_panels_resid" not in figures(at)  # drawn on demand
    at.toggle(key="patching_panels").set_value(True).run()
    figs = figures(at)
    resid, heads = figs["patching_panels_resid"], figs["patching_panels_heads"]
    assert [a["text"] for a in resid["layout"]["annotations"]] == ["resid_pre", "attn_out",
                                                                   "mlp_out"]
    assert [a["text"] for a in heads["layout"]["annotations"]] == ["z", "q", "k", "v",
                                                                   "pattern"]
    for fig in (resid, heads):
        axis = fig["layout"]["coloraxis"]
        assert (axis["cmin"], axis["cmax"]) == (-1, 1)
        assert {t["coloraxis"] for t in fig["data"]} == {"coloraxis"}
    table = pd.read_parquet(runs_dir / "tiny" / "localize" / "a1" / "patching.parquet")
    mlp = table[(table["site"] == "mlp_out") & (table["direction"] == "denoise")]
    z = np.asarray(resid["data"][2]["z"], dtype=float)
    assert z[1, 7] == pytest.approx(mlp[(mlp["layer"] == 1) & (mlp["pos"] == 7)]["effect"].item())


def test_a_no_op_cell_has_zero_effect_on_every_prompt(open_page):
    at = open_page("patching", patching_cell={"site": "resid_pre", "by_pos": True,
                                              "direction": "denoise", "layer": 0, "head": None,
                                              "pos": 0})
    per_prompt = figures(at)["patching_distribution"]["data"][0]["x"]
    assert len(per_prompt) == 32 and np.allclose(per_prompt, 0.0, atol=1e-4)
    at.radio(key="patching_direction").set_value("noise").run()
    assert "Selected: L0 resid_pre at <bos>, noise" in texts(at.subheader)  # follows the radio
    per_prompt = figures(at)["patching_distribution"]["data"][0]["x"]
    assert np.allclose(per_prompt, 0.0, atol=1e-4)


def test_a_clicked_cell_shows_its_effect_distribution_and_attention(open_page, common_module):
    at = open_page("patching")
    # a browser click reports the overlay point with its customdata: [row key, col key, value]
    fig = figures(at)["patching_layer_head"]
    point = {"curve_number": 1, "point_index": 6, "x": "H2", "y": "L1",
             "customdata": cells(fig)["customdata"][6]}
    assert common_module.cell_from_points([point]) == {"row": 1, "col": 2}
    at = open_page("patching", patching_cell={"site": "z", "by_pos": False,
                                              "direction": "denoise", "layer": 1, "head": 2,
                                              "pos": None})
    assert "Selected: L1H2 z (all positions), denoise" in texts(at.subheader)
    figs = figures(at)
    (box,) = [s for s in figs["patching_layer_head"]["layout"]["shapes"] if s["type"] == "rect"]
    assert (box["x0"] + box["x1"]) / 2 == 2 and (box["y0"] + box["y1"]) / 2 == 1  # outlined
    assert not [s for s in figs["patching_layer_pos"]["layout"].get("shapes", [])
                if s["type"] == "rect"]
    assert figs["patching_attention"]["layout"]["title"]["text"].startswith("Attention of L1H2")
    attention = figs["patching_attention"]["data"][0]
    assert len(attention["x"]) == len(LABELS) == len(attention["z"])
    at = open_page("patching", patching_cell={"site": "resid_pre", "by_pos": True,
                                              "direction": "denoise", "layer": 1, "head": None,
                                              "pos": 7})
    assert "Selected: L1 resid_pre at c0, denoise" in texts(at.subheader)
    assert "patching_attention" not in figures(at)
    assert any("shown for head cells" in m for m in texts(at.info))


def test_attribution_page(open_page):
    figs = figures(open_page("attribution"))
    assert figs["attribution_dla"]["layout"]["title"]["text"].startswith("Direct logit")
    assert figs["attribution_lens"]["data"][0]["y"] == ["embed", "L0", "L1"]
    assert figs["attribution_lens"]["data"][0]["x"] == ["c0", "c1", "c2"]
    scatter = figs["attribution_scatter"]
    assert scatter["data"][-1]["name"] == "y = x"
    assert sum(len(t["x"]) for t in scatter["data"][:-1]) == 2 * 4 * 11 + 2 * 11 + 2 * 4
    assert figs["attribution_paths"]["data"][0]["type"] == "bar"


def test_attention_page_picked_and_typed_prompts(open_page):
    at = open_page("attention")
    figs = figures(at)
    pattern = figs["attention_pattern"]["data"][0]
    assert len(pattern["x"]) == len(LABELS)
    z = np.asarray(pattern["z"], dtype=float)  # causal (NaN above the diagonal), rows sum to 1
    assert np.isnan(z[0, 1:]).all() and np.nansum(z, 1) == pytest.approx(1.0, abs=1e-5)
    assert len(figs["attention_operands"]["data"]) == 3  # one panel per answer digit
    assert len([t for t in figs["attention_pattern"]["data"] if t["type"] == "heatmap"]) == 4
    assert figs["attention_pattern"]["layout"]["title"]["text"].startswith(
        "Attention of every head of L0")
    at.radio(key="attention_source").set_value("type one").run()
    at.text_input(key="attention_problem").input("12+34").run()
    at.selectbox(key="attention_head").select(3).run()
    title = figures(at)["attention_pattern"]["layout"]["title"]["text"]
    assert title == "Attention of L0H3 on 12+34=640"
    at.text_input(key="attention_problem").input("12*34").run()
    assert not at.exception and "wrong operator" in at.error[0].value


def test_attention_on_the_tokens_follows_the_chosen_layer_and_prompt(open_page):
    at = open_page("attention", query={"layer": "1", "head": "2", "prompt": "5"})
    assert (at.selectbox(key="attention_layer").value, at.selectbox(key="attention_head").value,
            at.selectbox(key="attention_prompt").value) == (1, 2, 5)
    fig = figures(at)["attention_pattern"]
    assert fig["layout"]["title"]["text"].startswith("Attention of L1H2 on ")
    (frame,) = at.get("iframe")  # the hover view: every head of L1 on the same prompt
    html = frame.proto.srcdoc
    data = json.loads(re.search(r"const D = (.*);\n", html).group(1))
    assert data["heads"] == ["L1H0", "L1H1", "L1H2", "L1H3"] and data["head"] == 2
    z = np.nan_to_num(np.asarray(fig["data"][0]["z"], dtype=float))
    assert np.allclose(data["patterns"][2], z, atol=1e-4)
    assert (at.query_params["layer"], at.query_params["head"], at.query_params["prompt"]) == \
        ("1", "2", "5")


def test_attention_averaged_over_the_runs_prompts(open_page, runs_dir):
    from arithinterp.analysis.attention import compute_attention_patterns
    from arithinterp.checkpoints import load_model
    from arithinterp.tasks import make_dataset

    at = open_page("attention", attention_source="mean over the run's", attention_head=2)
    fig = figures(at)["attention_pattern"]
    assert fig["layout"]["title"]["text"] == "Attention of L0H2 on the mean of 16 problems"
    examples = pd.read_parquet(runs_dir / "tiny" / "evaluate" / "examples.parquet").head(16)
    loaded = load_model(runs_dir / "tiny" / "model")
    data = make_dataset(loaded.task, torch.tensor(examples["a"].tolist()),
                        torch.tensor(examples["b"].tolist()))
    expected = compute_attention_patterns(loaded.model, data.tokens, 0, 2).mean(0).numpy()
    z = np.asarray(fig["data"][0]["z"], dtype=float)
    assert np.allclose(np.nan_to_num(z), np.tril(expected), atol=1e-5)


def test_playground_answers_a_typed_problem(open_page, runs_dir):
    examples = pd.read_parquet(runs_dir / "tiny" / "evaluate" / "examples.parquet")
    whole = examples[examples["generated"].str.fullmatch(r"\d{3}")]  # 3 digits, no <eos>
    a, b, generated = whole.iloc[-1][["a", "b", "generated"]]
    at = open_page("playground")
    at.text_input(key="playground_problem").input(f" {a} + {b} = ").run()
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    # the model's greedy answer is the one the evaluation recorded (reversed digits)
    assert metrics["model's answer"] == str(int(generated[::-1]))
    assert metrics["correct answer"] == str(a + b)
    top = at.dataframe[0].value
    assert list(top["label"]) == ["c0", "c1", "c2", "<eos>"]
    assert {"top 1", "top 2", "top 3"} <= set(top.columns)
    assert list(top["generated"][:3]) == list(generated)
    live = figures(at)["playground_heatmap"]
    assert live["layout"]["title"]["text"].startswith(
        f"Live patching: z × position, denoise, {a}+{b}=")
    assert live["data"][0]["y"] == [f"L{L}H{h}" for L in range(2) for h in range(4)]
    assert live["data"][0]["x"] == LABELS and len(cells(live)["x"]) == 8 * len(LABELS)
    at.selectbox(key="playground_site").set_value("resid_pre").run()
    assert figures(at)["playground_heatmap"]["data"][0]["y"] == ["L0", "L1"]


def test_playground_typed_partner_noising_any_site_and_a_drill_down(open_page, runs_dir):
    from arithinterp.analysis.patching import PatchSpec, sweep_patching
    from arithinterp.checkpoints import load_model
    from arithinterp.core.metrics import answer_metric, default_digit
    from arithinterp.tasks import PromptPairs, make_dataset

    at = open_page("playground")
    at.text_input(key="playground_problem").input("12+34").run()
    at.radio(key="playground_partner").set_value("type it").run()
    at.text_input(key="playground_corrupt").input("12+43").run()
    assert not at.error
    at.selectbox(key="playground_site").set_value("mlp_out").run()
    at.radio(key="playground_direction").set_value("noise").run()
    live = figures(at)["playground_heatmap"]
    assert "mlp_out × position, noise" in live["layout"]["title"]["text"]
    loaded = load_model(runs_dir / "tiny" / "model")
    pairs = PromptPairs(make_dataset(loaded.task, torch.tensor([12]), torch.tensor([34])),
                        make_dataset(loaded.task, torch.tensor([12]), torch.tensor([43])), "x")
    frame = sweep_patching(loaded.model, pairs, PatchSpec("mlp_out"),
                           answer_metric(pairs, default_digit(pairs)),
                           direction="noise").to_frame(allow_unnormalized=True)
    expected = frame[(frame["layer"] == 1) & (frame["pos"] == 7)]["effect"].item()
    assert np.asarray(live["data"][0]["z"], dtype=float)[1, 7] == pytest.approx(expected,
                                                                                abs=1e-5)
    # a partner with the same answer has nothing to patch; one line says so
    at.text_input(key="playground_corrupt").input("34+12").run()
    assert "same answer" in at.error[0].value and "playground_heatmap" not in figures(at)
    # a clicked head cell drills down to its attention on both prompts
    at.text_input(key="playground_corrupt").input("12+43").run()
    at.selectbox(key="playground_site").set_value("z").run()
    at.session_state["playground_cell"] = ("L1H2", 7)
    at.run()
    assert "Selected: L1H2 z at c0, noise" in texts(at.subheader)
    figs = figures(at)
    for name, (a, b) in (("clean", (12, 34)), ("partner", (12, 43))):
        title = figs[f"playground_attention_{name}"]["layout"]["title"]["text"]
        assert title == f"L1H2 on the {name} {loaded.task.display(a, b)}"


@pytest.mark.parametrize(("problem", "message"), [
    ("12*34", "wrong operator '*'"), ("123+45", "too many digits in operand a (123)"),
    ("5+34", "operand a (5) must be in 10..99"), ("twelve", "cannot read"),
    ("", "type a problem"),
])
def test_playground_rejects_bad_input_with_a_clear_error(open_page, problem, message):
    at = open_page("playground")
    at.text_input(key="playground_problem").input(problem).run()
    assert not at.exception
    assert at.error[0].value.startswith("Invalid problem: ") and message in at.error[0].value
    assert "playground_heatmap" not in figures(at)


def test_corrupt_problem_changes_one_digit_and_the_answer(tiny_task):
    from arithinterp.tasks.corrupt import corrupt_problem

    a2, b2 = corrupt_problem(tiny_task, 12, 34, operand="a", digit=1, seed=0)
    assert b2 == 34 and a2 % 10 == 2 and a2 != 12 and 10 <= a2 <= 99
    assert corrupt_problem(tiny_task, 12, 34, operand="a", digit=1, seed=0) == (a2, b2)
    a2, b2 = corrupt_problem(tiny_task, 12, 34, operand="b", digit=0, seed=1)
    assert a2 == 12 and b2 // 10 == 3 and b2 != 34
    with pytest.raises(ValueError, match="digit must be in 0..1"):
        corrupt_problem(tiny_task, 12, 34, operand="a", digit=2)
    with pytest.raises(ValueError, match="not a problem"):
        corrupt_problem(tiny_task, 5, 34, operand="a", digit=0)


# ---- pages on runs that lack artifacts -------------------------------------------------------
def test_probes_page_reads_the_probe_and_fourier_tables(open_page, runs_dir):
    at = open_page("probes")
    figs = figures(at)
    scores = figs["probes_scores"]
    assert [t["name"] for t in scores["data"]] == ["score", "shuffled", "random_model",
                                                   "selectivity"]
    assert scores["data"][0]["y"] == ["L0", "L1"]
    table = pd.read_parquet(runs_dir / "tiny" / "probes" / "digits" / "scores.parquet")
    first = table["target"].iloc[0]
    assert scores["layout"]["title"]["text"].startswith(f"Probe {first}")
    at.selectbox(key="probes_target").select("c1").run()
    assert figures(at)["probes_scores"]["layout"]["title"]["text"].startswith("Probe c1")
    spectrum = pd.read_parquet(runs_dir / "tiny" / "fourier" / "spectrum.parquet")
    we = spectrum[spectrum["source"] == "W_E"].sort_values("frequency")
    fig = figs["fourier_spectrum"]
    assert [t["name"] for t in fig["data"]][:2] == ["W_E", "W_U"]
    assert fig["data"][0]["x"] == [str(i) for i in range(6)]
    assert fig["data"][0]["y"] == pytest.approx(we["fraction"].tolist())
    at.radio(key="fourier_value").set_value("power").run()
    assert figures(at)["fourier_spectrum"]["data"][0]["y"] == pytest.approx(we["power"].tolist())
    at.multiselect(key="fourier_tables").unselect("W_E").unselect("W_U").run()
    assert len(figures(at)["fourier_spectrum"]["data"]) == 1
    assert any("R²" in e.label for e in at.expander)


def test_an_unknown_run_in_the_url_is_said_not_silently_swapped(open_page):
    at = open_page("overview", run="doesnotexist")
    assert any("No finished run named `doesnotexist`" in w.value for w in at.sidebar.warning)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_a_run_without_localization_shows_messages(open_page, page):
    at = open_page(page, run="bare")
    messages = texts(at.info) + texts(at.error)
    if page in ("patching", "attribution"):
        assert any("has no `localize/`" in m and "arithinterp localize" in m for m in messages)
        assert not [k for k in figures(at) if k.startswith(page)]
    if page == "probes":
        assert any("has no `probes/" in m for m in messages)
        assert any("has no `fourier/spectrum.parquet`" in m for m in messages)
    if page == "attention":  # the live pattern still works; the summary table is missing
        assert "attention_pattern" in figures(at)
        assert any("has no `localize/`" in m for m in messages)
    if page == "playground":
        assert "playground_heatmap" in figures(at)


@pytest.mark.parametrize("page", ["overview", "patching", "attention", "playground"])
def test_a_run_whose_checkpoint_is_gone_is_an_error_not_a_traceback(open_page, page):
    at = open_page(page, run="orphan", include=True)
    assert at.title[0].value in ("Run orphan", "Activation patching", "Attention", "Playground")
    assert any("artifact model/model.safetensors is missing" in w.value
               for w in at.sidebar.warning)
    if page in ("attention", "playground"):
        assert any("checkpoint of run orphan is missing" in e for e in texts(at.error))


# ---- the multiplication page -----------------------------------------------------------------
@pytest.fixture
def open_study(quick_study, monkeypatch):
    runs, _ = quick_study

    def _open(run: str, **state) -> AppTest:
        monkeypatch.setenv("ARITHINTERP_RUNS_DIR", str(runs))
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params["run"] = run
        at.run()
        for key, value in state.items():
            at.session_state[key] = value
        at.switch_page("views/multiplication.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return _open


def test_the_multiplication_page_compares_the_arms_of_a_study(open_study, quick_study):
    at = open_study("q-study")
    figs = figures(at)
    names = {t["name"] for t in figs["mul_digit_accuracy"]["data"] if t["type"] == "bar"}
    assert names == {"sft", "icot", "aux"}
    assert figs["mul_digit_accuracy"]["data"][0]["x"] == ["c0", "c1", "c2", "c3"]
    comparison = quick_study[1].load(schema.STUDY_COMPARISON, "study")
    sft = next(t for t in figs["mul_probe_mae"]["data"] if t.get("name") == "sft")
    assert sft["y"] == pytest.approx(comparison[comparison["arm"] == "sft"][
        ["mae_c0", "mae_c1", "mae_c2", "mae_c3"]].mean().tolist())
    assert figs["mul_curves"]["layout"]["annotations"][0]["text"] == "c0"
    # the model views of an arm: the attention graph on a prompt, attribution, Fourier
    assert figs["mul_graph"]["layout"]["title"]["text"].startswith("L0H0 on ")
    assert "mul_attribution" in figs
    at.selectbox(key="mul_arm_run").select("q-icot-s0").run()
    at.selectbox(key="mul_head").select(1).run()
    assert figures(at)["mul_graph"]["layout"]["title"]["text"].startswith("L0H1 on ")
    assert not at.exception


def test_the_multiplication_page_on_an_arm_run_and_elsewhere(open_study, open_page):
    at = open_study("q-aux-s0")
    assert "mul_graph" in figures(at) and "mul_comparison" not in figures(at)
    at = open_page("multiplication")  # an addition run: says what is missing
    assert any("no `multiplication/` analysis" in m for m in texts(at.info))



def test_the_finetune_page_shows_gain_against_forgetting(quick_scenario, open_page, open_run):
    at = open_run(quick_scenario.dir.parent, quick_scenario.name, "finetune")
    figs = figures(at)
    gain = figs["ft_gain"]
    arms = {t["name"] for t in gain["data"] if t.get("showlegend") is not False}
    assert arms == {"selected", "random", "full", "none"}
    table = quick_scenario.load(schema.FINETUNE_COMPARISON, "finetune/sub")
    selected = next(t for t in gain["data"] if t["name"] == "selected")
    target = table[(table["arm"] == "selected") & (table["role"] == "target")]
    assert selected["x"] == pytest.approx(target["change"].tolist())
    assert {t["name"] for t in figs["ft_curves"]["data"]} == {"selected", "random", "full"}
    at = open_page("finetune")  # a run without a comparison says what makes one
    assert any("arithinterp finetune" in m for m in texts(at.info))


def test_the_finetune_page_shows_an_llms_gain_against_perplexity(tiny_llm_finetune, open_run):
    runs, run, _ = tiny_llm_finetune
    at = open_run(runs, run.name, "finetune")
    figs = figures(at)
    table = run.load(schema.FINETUNE_COMPARISON, "finetune/ft")
    target = table[table["role"] == "target"]
    points = {t["name"]: t for t in figs["ft_gain_ppl"]["data"]}
    assert {"selected", "random", "full", "none"} <= set(points)
    selected = target[target["arm"] == "selected"]
    assert points["selected"]["x"] == pytest.approx(selected["change"].tolist())
    assert points["selected"]["y"] == pytest.approx(
        (100 * (selected["ppl_after"] / selected["ppl_before"] - 1)).tolist())
    assert points["none"]["y"] == [0.0, 0.0]
    assert "ft_gain" in figs  # the other suite: forgetting of other arithmetic too
    assert {t["name"] for t in figs["ft_curves"]["data"]} == {"selected", "random", "full"}
    tuned = next(d.value for d in at.dataframe if "components" in d.value.columns
                 and "task" not in d.value.columns)
    assert len(tuned) == 10 and "L0H3,L1.mlp" in set(tuned["components"])
    means = next(d.value for d in at.dataframe if "ppl_after" in d.value.columns)
    assert set(means["task"]) == {"add2-few-shot", "mul1-few-shot"}
    caption = " ".join(c.value for c in at.caption)
    assert "add2-few-shot" in caption and "pydoc_data.topics" in caption


def test_the_modular_page_shows_grokking_and_the_fourier_picture(modular_run, open_page, open_run):
    at = open_run(modular_run.dir.parent, modular_run.name, "modular")
    figs = figures(at)
    curves = figs["mod_curves"]
    layout = curves["layout"]
    assert layout["xaxis"]["type"] == "log" and layout["yaxis2"]["type"] == "log"
    summary = modular_run.load(schema.MOD_SUMMARY, schema.MODULAR)
    marked = [s["x0"] for s in curves["layout"].get("shapes", [])]
    assert summary["memorized_step"] in marked
    spectrum = figs["mod_logit_spectrum"]
    key_bars = next(t for t in spectrum["data"] if t["name"] == "True")
    assert sorted(int(x) for x in key_bars["x"]) == summary["key_frequencies"]
    progress = figs["mod_progress"]
    names = {t["name"] for t in progress["data"]}
    assert {"restricted (train)", "excluded (test)", "gini embedding"} <= names
    assert "mod_neurons" in figs
    at = open_page("modular")  # an addition run: says what makes the page
    assert any("arithinterp modular RUN" in m for m in texts(at.info))


def test_the_sweeps_page_draws_the_phase_transition_plot(tiny_sweep, common_module, open_run):
    runs, table = tiny_sweep
    at = open_run(runs, "sw.n_train-40.seed-1", "sweeps")  # a trial: its sweep is picked
    assert at.selectbox(key="sweep_pick").value == "sw-sweep"
    assert "4 trials" in at.caption[0].value and "4 done" in at.caption[0].value
    fig = figures(at)["sweep_plot"]
    assert fig["layout"]["title"]["text"].startswith("exact_match vs n_train")
    assert fig["layout"]["xaxis"]["type"] == "log"
    mean = next(t for t in fig["data"] if t.get("name") == "exact_match")
    expected = table.groupby("n_train")["exact_match"].mean()
    assert mean["x"] == [40, 80] and mean["y"] == pytest.approx(expected.tolist())
    points = next(t for t in fig["data"] if t.get("meta") == "trials")
    assert sorted(r[0] for r in points["customdata"]) == sorted(table["run"])
    assert any(t.get("fill") == "tonexty" for t in fig["data"])  # the band over seeds
    at.selectbox(key="sweep_x").select("seed").run()
    at.selectbox(key="sweep_color").select("n_train").run()
    assert figures(at)["sweep_plot"]["layout"]["title"]["text"].startswith(
        "exact_match vs seed per n_train")
    # a click asks the picker for the trial's run, which it shows on the next rerun
    at.session_state[common_module.OPEN_RUN] = "sw.n_train-80.seed-0"
    at.run()
    assert at.session_state["run"] == "sw.n_train-80.seed-0" and not at.exception


def test_the_sweeps_page_without_a_sweep_says_how_to_make_one(open_page):
    at = open_page("sweeps")
    assert any("arithinterp sweep" in m for m in texts(at.info))


def test_provenance_export_and_a_shared_address(open_page, runs_dir):
    at = open_page("overview")
    assert any(e.label.startswith("Provenance") for e in at.expander)
    versions = next(d.value for d in at.dataframe if "package" in d.value.columns)
    assert {"arithinterp", "torch", "transformer_lens"} <= set(versions["package"])
    configs = [j.value for j in at.json]
    assert any("n_pairs" in json.loads(c) for c in configs)  # the localize stage's config
    at = open_page("patching")
    (localize,) = [json.loads(j.value) for j in at.json]  # this experiment's config only
    assert localize["n_pairs"] == 32
    # figures save as SVG; each heatmap's table downloads as CSV
    for el in at.get("plotly_chart"):
        assert json.loads(el.proto.config)["toImageButtonOptions"]["format"] == "svg"
    csv = [b for b in at.get("download_button") if "patching_layer_head" in b.proto.id]
    assert len(csv) == 1 and "CSV" in csv[0].proto.label
    # the address keeps the view: a shared link with a cell and direction reopens it
    assert at.query_params["direction"] == "denoise" and "cell" not in at.query_params
    at = open_page("patching", patching_cell={"site": "z", "by_pos": False,
                                              "direction": "denoise", "layer": 1, "head": 2,
                                              "pos": None})
    assert at.query_params["cell"] == "z:all:1:2"
    at = open_page("patching", query={"cell": "resid_pre:7:1:", "direction": "noise",
                                      "scale": "free"})
    assert "Selected: L1 resid_pre at c0, noise" in texts(at.subheader)
    assert at.radio(key="patching_scale").value == "free"
    query = {"cell": "z:all:1:2", "site": "mlp_out", "head_site": "v", "prompt": "3"}
    at = open_page("patching", query=query)  # selectors and the attention prompt too
    assert (at.selectbox(key="patching_site_pos").value,
            at.selectbox(key="patching_site_heads").value,
            at.selectbox(key="patching_prompt").value) == ("mlp_out", "v", 3)
    assert {k: at.query_params[k] for k in query} == query
    at = open_page("patching", query={"site": "no-such-site"})  # an unknown value is ignored
    assert at.selectbox(key="patching_site_pos").value == "resid_pre"


def test_the_pairs_behind_a_cell_are_written_out_and_one_opens_its_own_heatmap(open_page,
                                                                                runs_dir):
    cell = {"site": "z", "by_pos": False, "direction": "denoise", "layer": 1, "head": 2,
            "pos": None}
    at = open_page("patching", patching_cell=cell)
    table = next(d.value for d in at.dataframe if "corrupted metric" in d.value.columns)
    assert len(table) == 32 and table["effect"].is_monotonic_decreasing
    # the problems are written out: a clean problem and its partner differ in operand a only
    first = table.iloc[0]
    clean_a, corrupt_a = first["clean"].split("+")[0], first["corrupted"].split("+")[0]
    assert clean_a != corrupt_a and first["clean"].split("+")[1][:2] == \
        first["corrupted"].split("+")[1][:2]
    # the table's effect is the stored per-prompt value of that cell, pair by pair
    values = load_file(runs_dir / "tiny" / "localize" / "a1" / "patching.safetensors")
    grid = schema.grid_key("z", False, "denoise")
    stored = values[schema.prompt_keys(grid)["normalized"]][1, 2].numpy()
    assert np.allclose(table.sort_values("pair")["effect"], stored, equal_nan=True)
    at = open_page("patching", patching_cell=cell,
                   patching_pairs={"selection": {"rows": [0], "columns": [], "cells": []}})
    figs = figures(at)
    pair = int(first["pair"])
    heat = figs["patching_pair_heatmap"]
    assert heat["layout"]["title"]["text"].startswith(f"Pair {pair}: {first['clean']}")
    assert heat["data"][0]["z"][1][2] == pytest.approx(stored[pair], abs=1e-5)
    assert figs["patching_pair_clean"]["layout"]["title"]["text"].endswith(first["clean"])
    assert figs["patching_pair_corrupt"]["layout"]["title"]["text"].endswith(
        first["corrupted"])


def test_two_runs_side_by_side_and_their_difference_on_one_scale(demo_runs, tmp_path, ctx,
                                                                 open_run):
    from arithinterp.analysis.suite import LocalizeConfig
    from arithinterp.stages.job import run_job
    from arithinterp.studies.demo import demo_job

    runs, trained = demo_runs
    compare = tmp_path / "runs"
    shutil.copytree(runs / "tiny", compare / "tiny")
    other = LocalizeConfig(n_pairs=32, n_eval=32, n_random=1, seed=1)  # other minimal pairs
    run_job(compare, "tiny-seed1", demo_job(str(trained), n_eval=64, localize=(other,),
                                            n_probe=None), ctx=ctx)
    at = open_run(compare, "tiny", "compare")
    assert at.selectbox(key="compare_run_b").value == "tiny-seed1"
    figs = figures(at)
    a, b, diff = (figs[k] for k in ("compare_a", "compare_b", "compare_difference"))
    scale = {(f["layout"]["coloraxis"]["cmin"], f["layout"]["coloraxis"]["cmax"])
             for f in (a, b, diff)}
    assert len(scale) == 1  # one colour scale for all three
    tables = [pd.read_parquet(compare / name / "localize" / "a1" / "patching.parquet")
              for name in ("tiny", "tiny-seed1")]
    cell = [t[(t["site"] == "resid_pre") & (t["direction"] == "denoise") & (t["layer"] == 1)
              & (t["pos"] == 7)]["effect"].item() for t in tables]
    assert np.asarray(diff["data"][0]["z"], dtype=float)[1, 7] == pytest.approx(
        cell[0] - cell[1])
    assert cell[0] != cell[1]
    at.selectbox(key="compare_grid").set_value(("z", False)).run()
    assert figures(at)["compare_difference"]["data"][0]["x"] == ["H0", "H1", "H2", "H3"]


def test_residual_stream_pca_of_the_cached_activations(open_page, runs_dir):
    from arithinterp.probes.geometry import pca_projection

    at = open_page("probes")
    hook = at.selectbox(key="pca_hook").value
    assert hook.endswith("hook_resid_post")
    at.selectbox(key="pca_pos").set_value(LABELS.index("c0")).run()
    targets = at.selectbox(key="pca_target").options
    assert "a1" in targets and any(t.startswith("carry") for t in targets)
    at.selectbox(key="pca_target").set_value("a1").run()
    fig = figures(at)["pca_scatter"]
    stored = load_file(runs_dir / "tiny" / "localize" / "a1" / "cache.safetensors")
    pairs = load_file(runs_dir / "tiny" / "localize" / "a1" / "pairs.safetensors")
    coords, _ = pca_projection(stored[hook][:, LABELS.index("c0")], k=2)
    # one trace per value of a1; each point where the library projection puts that prompt
    tens = (pairs[schema.pair_keys("clean")["a"]] // 10 % 10).numpy()
    for trace in fig["data"]:
        rows = np.flatnonzero(tens == int(trace["name"]))
        assert np.allclose(sorted(trace["x"]), sorted(coords[rows, 0]), atol=1e-4)
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC1 (")


def test_the_neurons_page_ranks_patches_and_profiles_one_layers_neurons(open_page, runs_dir):
    from arithinterp.analysis.neurons import neuron_table
    from arithinterp.analysis.suite import task_pairs
    from arithinterp.checkpoints import load_model
    from arithinterp.core.metrics import answer_metric

    at = open_page("neurons")
    figs = figures(at)
    loaded = load_model(runs_dir / "tiny" / "model")
    stored = load_file(runs_dir / "tiny" / "localize" / "a1" / "pairs.safetensors")
    pairs = task_pairs(loaded.task, stored, "a_1")
    summary = json.loads((runs_dir / "tiny" / "localize" / "a1" / "summary.json").read_text())
    expected = neuron_table(loaded.model, pairs.clean, answer_metric(pairs,
                                                                     summary["answer_digit"]), 1)
    dla = figs["neurons_dla"]["data"][0]
    assert dla["x"] == expected["component"].head(20).tolist()
    assert np.allclose(dla["y"], expected["dla"].head(20), atol=1e-5)
    patching = figs["neurons_patching"]["data"]
    assert [t["name"] for t in patching] == ["denoise", "noise"]
    assert all(len(t["x"]) == 10 for t in patching)
    top = next(d.value for d in at.dataframe if "problem" in d.value.columns)
    assert len(top) == 15 and top["activation"].is_monotonic_decreasing
    at.selectbox(key="neurons_target").set_value("a0").run()
    by = figures(at)["neurons_by"]["data"][0]
    assert sorted(int(x) for x in by["x"]) == list(range(10))  # one bar per digit value


def test_probe_weights_as_cosines_between_classes_and_to_the_unembedding(open_page, runs_dir):
    from arithinterp.probes.geometry import direction_cosines

    at = open_page("probes")
    probe = at.selectbox(key="probes_weights").value
    figs = figures(at)
    weights = load_file(runs_dir / "tiny" / "probes" / "digits" / "weights.safetensors")
    coef = weights[f"{probe}.coef"]
    z = np.asarray(figs["probes_weights_self"]["data"][0]["z"], dtype=float)
    assert np.allclose(z, direction_cosines(coef, coef), atol=1e-6)
    assert np.allclose(np.diag(z), 1.0)
    assert len(figs["probes_weights_unembed"]["data"][0]["x"]) == 10  # the ten digits


def test_the_llm_page_shows_answers_heads_positions_and_the_knockout(tiny_llm_run, open_page,
                                                                     open_run):
    runs, run = tiny_llm_run
    key = "localize/add2-few-shot-a1"
    at = open_run(runs, run.name, "llm")
    examples = next(d.value for d in at.dataframe if "question" in d.value.columns)
    assert len(examples) == 10 and examples["question"].str.endswith("=").all()
    figs = figures(at)
    heads = figs["llm_heads"]["data"][0]
    assert np.asarray(heads["z"], dtype=float).shape == (2, 4)  # every layer and head
    table = run.load(schema.ATTRIBUTION, key)
    z = table[table["site"] == "z"].sort_values(["layer", "head"])["normalized"].to_numpy()
    assert np.allclose(np.asarray(heads["z"], dtype=float).ravel(), z)
    positions = figs["llm_positions"]["data"][0]
    summary = run.load(schema.LOCALIZE_SUMMARY, key)
    assert len(positions["x"]) == len(summary["position_labels"])
    marked = [x for x in positions["x"] if "(a" in x or "(b" in x]  # the question's operands
    assert [x[-4:] for x in marked] == ["(a1)", "(a0)", "(b1)", "(b0)"]
    knockout = figs["llm_knockout"]
    assert {"selected", "random_0", "random_1"} <= set(knockout["data"][0]["x"])
    for key_ in ("llm_scatter", "llm_dla", "llm_lens", "llm_attention"):
        assert key_ in figs, key_
    exact = run.load(schema.PATCHING, key)
    grid = np.asarray(figs["llm_positions_exact"]["data"][0]["z"], dtype=float)
    resid = exact[exact["site"] == "resid_pre"].sort_values(["layer", "pos"])["normalized"]
    assert grid.shape == (2, len(summary["position_labels"]))
    assert np.allclose(grid.ravel(), resid.to_numpy(), equal_nan=True)
    assert np.asarray(figs["llm_heads_exact"]["data"][0]["z"], dtype=float).shape == (2, 4)
    paths = run.load(schema.PATHS, key)
    bars = figs["llm_paths"]["data"]
    assert sorted(x for b in bars for x in b["x"]) == sorted(paths["sender"])
    assert any("has no Fourier table" in m for m in texts(at.info))
    at = open_page("llm")  # a run without an LLM experiment says what makes one
    assert any("arithinterp llm run" in m for m in texts(at.info))
