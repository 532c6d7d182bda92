"""Figure builders: each returns a figure with the expected traces and axes on hand-made tables."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from arithinterp import viz

LABELS = ["<bos>", "a0", "+", "b0", "=", "c0", "c1", "<eos>"]


def patch_table(site="resid_pre", by_pos=True, heads=0, layers=2, n_pos=8, direction="denoise"):
    """A tidy patching grid like PatchResult.to_frame(): value = layer + pos/10 (+ head/100)."""
    rows = []
    for layer in range(layers):
        for head in (range(heads) if heads else [None]):
            for pos in (range(n_pos) if by_pos else [None]):
                v = layer + (pos or 0) / 10 + (head or 0) / 100
                rows.append({"site": site, "by_pos": by_pos, "layer": layer,
                             "head": np.nan if head is None else float(head),
                             "pos": np.nan if pos is None else float(pos),
                             "token": None if pos is None else LABELS[pos],
                             "component": f"L{layer}H{head}" if head is not None
                             else f"L{layer}.resid",
                             "value": v, "normalized": v / 2 - 0.5, "direction": direction,
                             "metric": "logit_diff(c1)"})
    return pd.DataFrame(rows)


def overlay(fig: go.Figure):
    cells = [t for t in fig.data if t.meta == viz.CELLS]
    assert len(cells) == 1
    return cells[0]


def test_viz_imports_only_data_and_plotting_libraries():
    tree = ast.parse(Path(viz.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            # of the package, only the component names (a data type)
            roots.add("components" if node.module == "arithinterp.components"
                      else node.module.split(".")[0])
    assert roots <= {"__future__", "collections", "html", "json", "numpy", "pandas", "plotly",
                     "jaxtyping", "torch", "components"}, roots


def test_patching_layer_by_position_heatmap_has_labels_and_a_clickable_cell_each():
    fig = viz.patching_figure(patch_table(), rows="layer", cols="pos", value="normalized")
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert list(heat.x) == LABELS and list(heat.y) == ["L0", "L1"]
    assert np.asarray(heat.z).shape == (2, len(LABELS))
    assert np.asarray(heat.z)[1, 3] == pytest.approx((1 + 0.3) / 2 - 0.5)
    assert fig.layout.coloraxis.colorscale[0][1] == "rgb(103,0,31)"  # RdBu
    assert fig.layout.coloraxis.cmid == 0
    cells = overlay(fig)
    assert cells.type == "scatter" and cells.marker.symbol == "square"
    assert cells.marker.opacity < 0.05
    assert len(cells.x) == 2 * len(LABELS)
    # customdata: [layer, pos, value]; point (L1, b0) sits on that cell's labels
    i = [tuple(c[:2]) for c in cells.customdata].index((1, 3))
    assert (cells.y[i], cells.x[i]) == ("L1", "b0")
    assert cells.customdata[i][2] == pytest.approx(0.15)
    assert fig.layout.xaxis.type == "category" and fig.layout.xaxis.title.text == "position"


def test_patching_raw_values_layer_by_head_and_head_by_position():
    heads_all = patch_table(site="z", by_pos=False, heads=3)
    fig = viz.patching_figure(heads_all, rows="layer", cols="head", value="value")
    assert list(fig.data[0].x) == ["H0", "H1", "H2"] and list(fig.data[0].y) == ["L0", "L1"]
    assert np.asarray(fig.data[0].z)[1, 2] == pytest.approx(1.02)
    assert len(overlay(fig).x) == 6
    by_pos = patch_table(site="z", heads=3)
    one_layer = by_pos[by_pos["layer"] == 1]
    fig = viz.patching_figure(one_layer, rows="head", cols="pos")
    assert list(fig.data[0].y) == ["H0", "H1", "H2"] and list(fig.data[0].x) == LABELS
    assert len(overlay(fig).x) == 3 * len(LABELS)
    fig = viz.patching_figure(by_pos, rows="component", cols="pos")
    assert list(fig.data[0].y) == [f"L{L}H{h}" for L in range(2) for h in range(3)]


def test_patching_figure_rejects_unknown_axes_and_values():
    with pytest.raises(ValueError, match="rows and cols"):
        viz.patching_figure(patch_table(), rows="layer", cols="token")
    with pytest.raises(ValueError, match="value"):
        viz.patching_figure(patch_table(), value="restored")


def test_a_fixed_scale_a_selected_cell_and_the_metric_position_are_drawn():
    fig = viz.patching_figure(patch_table(), value="normalized", zrange=(-1.0, 1.0),
                              selected=(1, 3), mark_pos=6, mark_label="logit_diff(c1)")
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == (-1, 1) and "[-1, 1]" in axis.colorbar.title.text
    (outline,) = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (2.5, 3.5, 0.5, 1.5)  # L1, b0
    (line,) = [s for s in fig.layout.shapes if s.type == "line"]
    assert line.x0 == line.x1 == 6  # the column of position 6 ('=')
    assert fig.layout.annotations[0].text == "logit_diff(c1)"
    free = viz.patching_figure(patch_table(), value="normalized")
    assert free.layout.coloraxis.cmin is None and not free.layout.shapes
    # a selection outside this grid (another layer, say) outlines nothing
    assert not viz.patching_figure(patch_table(), selected=(5, 0)).layout.shapes


def test_every_site_side_by_side_on_one_scale():
    table = pd.concat([patch_table(site=site).assign(normalized=scale * patch_table()["normalized"])
                       for site, scale in (("resid_pre", 1.0), ("attn_out", 3.0))])
    fig = viz.patching_panels_figure(table, ["resid_pre", "attn_out"], rows="layer", cols="pos",
                                     value="normalized")
    left, right = fig.data
    assert np.asarray(right.z) == pytest.approx(3 * np.asarray(left.z))
    bound = float(np.abs(np.asarray(right.z)).max())  # one scale: the largest |value| shown
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-bound, bound)
    assert left.coloraxis == right.coloraxis == "coloraxis" and list(left.x) == LABELS
    fixed = viz.patching_panels_figure(table, ["attn_out"], rows="layer", cols="pos",
                                       value="normalized", zrange=(-1.0, 1.0))
    assert "[-1, 1]" in fixed.layout.coloraxis.colorbar.title.text
    with pytest.raises(ValueError, match="no rows for site 'mlp_out'"):
        viz.patching_panels_figure(table, ["mlp_out"], rows="layer", cols="pos")


def test_duplicate_position_labels_are_made_unique():
    assert viz.unique_labels(["1", "+", "1"]) == ["0:1", "1:+", "2:1"]
    assert viz.token_labels(["<bos>", "1", "+", "1"], ["<bos>", "a0", "+", "b0"]) == \
        ["<bos>", "1 (a0)", "+", "1 (b0)"]


def test_training_curve_has_loss_exact_match_and_one_line_per_digit():
    curve = pd.DataFrame([{"step": s, "loss": 3 / s, "lr": 1e-3, "exact_match": s / 40,
                           "digit": d, "digit_accuracy": s / 30} for s in (10, 20, 30)
                          for d in range(3)])
    fig = viz.training_curve_figure(curve)
    names = [t.name for t in fig.data]
    assert names == ["loss", "exact match", "c0", "c1", "c2"]
    assert list(fig.data[0].x) == [10, 20, 30]
    assert fig.layout.xaxis2.title.text == "step"


def test_accuracy_figures():
    fig = viz.digit_accuracy_figure([0.5, 0.75, 1.0])
    assert list(fig.data[0].x) == ["c0", "c1", "c2"]
    by_carries = pd.DataFrame({"n_carries": [1, 0], "count": [5, 7], "exact_match": [0.2, 0.9]})
    fig = viz.accuracy_by_carries_figure(by_carries)
    assert list(fig.data[0].x) == ["0", "1"] and list(fig.data[0].y) == [0.9, 0.2]


def test_effect_distribution_histogram_with_baselines():
    fig = viz.effect_distribution_figure(torch.tensor([0.0, 0.5, 1.0, 1.5]), clean=2.0,
                                         corrupted=-1.0, title="L0H1")
    assert fig.data[0].type == "histogram" and len(fig.data[0].x) == 4
    assert sorted(s.x0 for s in fig.layout.shapes) == [-1.0, 0.75, 2.0]
    assert fig.layout.title.text == "L0H1"


def test_dla_logit_lens_and_attribution_figures():
    dla = pd.DataFrame({"component": ["embed", "L0H0", "L0.mlp"], "layer": [None, 0, 0],
                        "head": [None, 0, None], "kind": ["embed", "head", "mlp"],
                        "value": [0.1, 0.5, 2.0], "std": [0.1, 0.1, 0.3]})
    fig = viz.dla_figure(dla)
    assert {t.name for t in fig.data} == {"embed", "head", "mlp"}
    lens = pd.DataFrame([{"stage": s, "layer": None, "digit": d, "pos": 4 + d, "token": "x",
                          "target": f"c{d}", "accuracy": a, "mean_rank": 1.0, "mean_prob": 0.5}
                         for s, a in (("embed", 0.1), ("L0", 0.5), ("L1", 0.9))
                         for d in range(2)])
    fig = viz.logit_lens_figure(lens)
    assert list(fig.data[0].y) == ["embed", "L0", "L1"] and list(fig.data[0].x) == ["c0", "c1"]
    assert np.asarray(fig.data[0].z)[2, 1] == 0.9
    exact = patch_table(site="z", heads=2)
    attribution = exact.assign(value=exact["value"] * 0.9)
    fig = viz.attribution_scatter_figure(attribution, exact)
    assert len(fig.data[0].x) == len(exact) and fig.data[-1].name == "y = x"
    np.testing.assert_allclose(fig.data[0].y, np.asarray(fig.data[0].x) * 0.9)


def test_paths_and_knockout_figures():
    paths = pd.DataFrame({"sender": ["L0H0", "L0H1", "L0H0"], "receiver": ["logits", "logits",
                                                                          "L1H0"],
                          "receiver_input": [None, None, "q"], "value": [1.0, 2.0, 3.0],
                          "normalized": [0.1, 0.2, 0.3]})
    fig = viz.paths_figure(paths)
    assert {t.name for t in fig.data} == {"logits", "L1H0.q"}
    knock = pd.DataFrame({"condition": ["none", "selected"], "components": ["", "L0H0"],
                          "exact_match": [1.0, 0.1], "metric_drop": [0.0, 4.5]})
    accuracy, drop = viz.knockout_figure(knock).data
    assert list(accuracy.x) == ["none", "selected"] and list(drop.y) == [0.0, 4.5]
    assert list(accuracy.text) == list(drop.text) == ["(none)", "L0H0"]  # named on the bars
    assert len(viz.knockout_figure(knock.drop(columns="metric_drop")).data) == 1


def test_attention_pattern_is_causal_with_token_labels():
    raw = torch.rand(4, 4).tril()
    pattern = raw / raw.sum(-1, keepdim=True)
    fig = viz.attention_pattern_figure(pattern, ["<bos>", "1", "+", "1"], title="L0H0")
    z = np.asarray(fig.data[0].z, dtype=float)
    assert np.isnan(z[0, 1]) and np.allclose(np.nansum(z, 1), 1)
    assert list(fig.data[0].x) == ["0:<bos>", "1:1", "2:+", "3:1"]
    assert fig.layout.xaxis.title.text == "key" and fig.layout.yaxis.title.text == "query"
    with pytest.raises(ValueError, match="labels"):
        viz.attention_pattern_figure(pattern, ["a", "b"])
    marked = viz.attention_pattern_figure(pattern, ["<bos>", "1", "+", "1"], mark_query=2)
    assert marked.layout.shapes[0].y0 == marked.layout.shapes[0].y1 == 2


def test_all_heads_of_a_layer_side_by_side_on_one_scale():
    raw = torch.rand(3, 4, 4).tril()
    patterns = (raw / raw.sum(-1, keepdim=True)).numpy()
    fig = viz.attention_heads_figure(patterns, ["<bos>", "1", "+", "1"], ["L0H0", "L0H1", "L0H2"],
                                     mark_query=2)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 3 and {t.coloraxis for t in heat} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0, 1)
    assert np.isnan(np.asarray(heat[1].z, dtype=float)[0, 1])  # causal mask
    assert [a.text for a in fig.layout.annotations][:3] == ["L0H0", "L0H1", "L0H2"]
    assert len([s for s in fig.layout.shapes if s.type == "line"]) == 3
    with pytest.raises(ValueError, match="expected"):
        viz.attention_heads_figure(patterns, ["a", "b"], ["L0H0"])


def test_attention_on_tokens_is_self_contained_html_with_the_patterns():
    raw = torch.rand(2, 4, 4).tril()
    patterns = (raw / raw.sum(-1, keepdim=True)).numpy()
    html = viz.attention_tokens_html(patterns, ["<bos>", "1", "</script>", "2"], ["L0H0", "L0H1"],
                                     mark_query=3, head=1)
    assert "http" not in html and html.count("<script>") == 1  # no network, one script
    assert html.count("</script>") == 1  # a token's text cannot close the script
    data = json.loads(re.search(r"const D = (.*);\n", html).group(1))  # JSON reads <\/ as </
    assert data["tokens"][2] == "</script>" and data["heads"] == ["L0H0", "L0H1"]
    assert np.allclose(data["patterns"], patterns, atol=1e-4)
    assert (data["mark"], data["head"]) == (3, 1)
    assert viz.TOKENS_VIEW_ID in html
    with pytest.raises(ValueError, match="expected"):
        viz.attention_tokens_html(patterns, ["a", "b"], ["L0H0", "L0H1"])


def test_operand_attention_one_panel_per_answer_digit():
    rows = [{"layer": L, "head": h, "component": f"L{L}H{h}", "digit": d, "query_pos": 4 + d,
             "key": k, "key_pos": None, "attention": 0.25, "std": 0.0}
            for L in range(2) for h in range(2) for d in range(3)
            for k in ("a0", "b0", "other")]
    fig = viz.operand_attention_figure(pd.DataFrame(rows))
    assert len(fig.data) == 3
    assert list(fig.data[0].x) == ["a0", "b0", "other"]
    assert list(fig.data[0].y) == ["L0H0", "L0H1", "L1H0", "L1H1"]


def probe_table(head=False):
    rows = []
    for layer in range(2):
        for h in ([0, 1] if head else [None]):
            for pos, label in ((4, "="), (5, "c0")):
                for metric, score in (("accuracy", 0.5 + layer / 4), ("balanced_accuracy", .4)):
                    rows.append({"target": "c0", "site": "resid_post", "layer": layer,
                                 "head": h, "pos": pos, "label": label, "metric": metric,
                                 "score": score, "shuffled": 0.1, "random_model": 0.2,
                                 "baseline": 0.1, "selectivity": score - 0.1})
    df = pd.DataFrame(rows)
    df["head"] = df["head"].astype("Int64")
    return df


def test_probe_scores_show_score_and_controls_by_layer_and_position():
    fig = viz.probe_scores_figure(probe_table(), target="c0")
    assert [t.name for t in fig.data] == ["score", "shuffled", "random_model", "selectivity"]
    assert list(fig.data[0].y) == ["L0", "L1"] and list(fig.data[0].x) == ["=", "c0"]
    assert np.asarray(fig.data[0].z)[1, 0] == 0.75  # accuracy preferred over balanced
    assert "accuracy" in fig.layout.title.text
    fig = viz.probe_scores_figure(probe_table(head=True), target="c0",
                                  metric="balanced_accuracy")
    assert list(fig.data[0].y) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    no_random = probe_table().assign(random_model=np.nan)
    assert "random_model" not in [t.name for t in viz.probe_scores_figure(no_random,
                                                                          target="c0").data]
    with pytest.raises(ValueError, match="no probe rows"):
        viz.probe_scores_figure(probe_table(), target="carry1")


def test_probe_predictions_and_fourier_spectrum():
    preds = pd.DataFrame({"truth": [1, 2, 3], "prediction": [1.1, 1.9, 3.2]})
    fig = viz.probe_predictions_figure(preds, truth="truth", prediction="prediction")
    assert len(fig.data[0].x) == 3 and fig.data[1].name == "y = x"
    spec = pd.DataFrame({"frequency": [0, 1, 2] * 2, "power": [0.5, 0.3, 0.2, 0.1, 0.1, 0.8],
                         "layer": [0] * 3 + [1] * 3})
    fig = viz.fourier_spectrum_figure(spec, frequency="frequency", value="power", color="layer")
    assert [t.name for t in fig.data] == ["0", "1"] and list(fig.data[0].x) == ["0", "1", "2"]


def test_grokking_curves_are_on_log_axes_with_milestones():
    curve = pd.DataFrame({"step": [0, 100, 1000, 10000], "loss": [4.7, 0.01, 1e-4, 1e-5],
                          "digit_loss": [4.7, 20.0, 5.0, 0.01],
                          "exact_match": [0.0, 0.01, 0.3, 1.0],
                          "train_exact_match": [0.0, 1.0, 1.0, 1.0]})
    fig = viz.grokking_curves_figure(curve, marks={"memorized": 100, "generalized": None})
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert [s.x0 for s in fig.layout.shapes] == [100, 100]  # both panels; none for None
    test_acc = next(t for t in fig.data if t.name == "test accuracy")
    assert list(test_acc.x) == [100, 1000, 10000]  # step 0 has no place on a log axis


def test_progress_and_neuron_figures():
    rows = [{"step": s, "key_fraction": f, "gini_embedding": g, "gini_neuron_logit": g,
             "logits": kind, "split": split, "loss": 1.0, "accuracy": 0.5}
            for s, f, g in ((0, 0.01, 0.1), (500, 0.5, 0.6))
            for kind in ("full", "restricted", "excluded") for split in ("train", "test")]
    fig = viz.progress_figure(pd.DataFrame(rows))
    names = [t.name for t in fig.data]
    assert len(names) == 6 + 3 and "excluded (train)" in names
    assert list(next(t for t in fig.data if t.name == "key fraction").y) == [0.01, 0.5]
    neurons = pd.DataFrame({"neuron": range(4), "frequency": [3, 3, 7, 0],
                            "fve": [0.9, 0.8, 0.2, float("nan")],
                            "key": [True, True, False, False]})
    fig = viz.neuron_frequencies_figure(neurons)
    bars = {t.name: dict(zip(t.x, t.y, strict=True)) for t in fig.data}
    assert bars == {"key": {"3": 2}, "other": {"7": 1}}  # the dead neuron is left out


def test_sweep_figure_means_bands_and_clickable_trials():
    table = pd.DataFrame({
        "trial": [f"t{i}" for i in range(6)], "run": [f"t{i}" for i in range(6)],
        "status": ["done"] * 5 + ["failed"], "format": ["plain"] * 4 + ["reversed"] * 2,
        "n_train": [10, 10, 100, 100, 10, 100], "seed": [0, 1, 0, 1, 0, 0],
        "exact_match": [0.1, 0.3, 0.8, 1.0, 0.5, float("nan")]})
    fig = viz.sweep_figure(table, x="n_train", color="format", log_x=True)
    plain = next(t for t in fig.data if t.name == "format=plain")
    assert list(plain.x) == [10, 100] and list(plain.y) == pytest.approx([0.2, 0.9])
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) == 1  # only plain has two seeds per point; failed trials are left out
    trials = [t for t in fig.data if t.meta == viz.SWEEP_POINTS]
    assert sorted(r[0] for t in trials for r in t.customdata) == ["t0", "t1", "t2", "t3", "t4"]
    assert fig.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="'d_model' is not a column"):
        viz.sweep_figure(table, x="d_model")


def test_pca_scatter_colours_by_a_target():
    coords = np.arange(12, dtype=float).reshape(6, 2)
    fig = viz.pca_figure(coords, np.array([0.5, 0.25]), np.array([0, 1, 0, 1, 2, 2]),
                         colour_title="carry_in[1]", hover=[f"p{i}" for i in range(6)])
    assert [t.name for t in fig.data] == ["0", "1", "2"]  # one trace per value, in order
    assert list(fig.data[1].x) == [2.0, 6.0]
    assert fig.layout.xaxis.title.text == "PC1 (50.0% of variance)"
    scale = viz.pca_figure(coords, np.array([0.5, 0.25]), np.linspace(0, 1, 6),
                           colour_title="running_sum_1")
    assert len(scale.data) == 1 and scale.layout.coloraxis.colorbar.title.text == "running_sum_1"
    with pytest.raises(ValueError, match="one colour value per row"):
        viz.pca_figure(coords, np.array([0.5, 0.25]), [0, 1], colour_title="x")


def test_neuron_figures():
    table = pd.DataFrame({"component": ["L1.n3", "L1.n0"], "dla": [2.0, -1.0],
                          "dla_std": [0.5, 0.1]})
    fig = viz.neuron_dla_figure(table)
    assert list(fig.data[0].x) == ["L1.n3", "L1.n0"] and list(fig.data[0].error_y.array) == \
        [0.5, 0.1]
    patched = pd.DataFrame({"component": ["L1.n3", "L1.n3"], "effect": [0.4, 0.3],
                            "direction": ["denoise", "noise"]})
    assert [t.name for t in viz.neuron_patching_figure(patched).data] == ["denoise", "noise"]
    by = pd.DataFrame({"a0": [0, 1], "activation": [0.2, 1.5], "activation_std": [0.1, 0.2],
                       "count": [5, 7]})
    fig = viz.activation_by_figure(by, "a0")
    assert list(fig.data[0].y) == [0.2, 1.5] and fig.layout.title.text == "Mean activation by a0"


def test_cosine_heatmap_on_a_fixed_scale():
    fig = viz.cosine_figure(np.eye(2), ["0", "1"], ["a", "b"], x_title="x", y_title="y")
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-1, 1)
    assert list(fig.data[0].x) == ["a", "b"]
    with pytest.raises(ValueError, match="labels give"):
        viz.cosine_figure(np.eye(2), ["0"], ["a", "b"], x_title="x", y_title="y")


def test_llm_fourier_against_its_control():
    table = pd.DataFrame({"source": ["W_E", "W_U", "resid_post", "resid_post"],
                          "layer": pd.array([None, None, 0, 1], dtype="Int64"),
                          "grouped_by": [None, None, "d", "d"], "freqs": "0,1,2,5",
                          "median_r2": [0.9, 0.8, 0.5, 0.7], "shuffled_r2": [0.4] * 4,
                          "n_features": 8})
    fig = viz.llm_fourier_figure(table)
    assert list(fig.data[0].y) == [0.5, 0.7] and list(fig.data[1].y) == [0.4, 0.4]
    assert [s.y0 for s in fig.layout.shapes] == [0.9, 0.8]


def test_gain_against_perplexity_and_against_forgetting():
    rows = []
    for arm, draw, gain, ppl_after, other in (("selected", 0, 0.4, 11.0, -0.1),
                                              ("random", 0, 0.1, 10.0, 0.0),
                                              ("random", 1, 0.3, 12.0, -0.2),
                                              ("none", 0, 0.0, 10.0, 0.0)):
        for role, change in (("target", gain), ("other", other)):
            rows.append({"arm": arm, "draw": draw, "seed": 0, "components": f"{arm}{draw}",
                         "role": role, "change": change, "ppl_before": 10.0,
                         "ppl_after": ppl_after})
    table = pd.DataFrame(rows)
    fig = viz.gain_perplexity_figure(table)
    points = {t.name: t for t in fig.data}
    assert list(points["selected"].x) == [0.4] and list(points["selected"].y) == \
        pytest.approx([10.0])  # perplexity 10 -> 11: +10 %
    assert list(points["random mean"].x) == pytest.approx([0.2])
    assert list(points["random mean"].y) == pytest.approx([10.0])  # mean of 0 % and 20 %
    assert list(points["none"].y) == [0.0] and "perplexity" in fig.layout.yaxis.title.text
    forgetting = {t.name: t for t in viz.gain_forgetting_figure(table).data}
    assert list(forgetting["random"].y) == pytest.approx([0.0, -0.2])
