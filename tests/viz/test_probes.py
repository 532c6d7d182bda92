"""Probe scores beside their controls, predictions, cosines and principal components."""

import numpy as np
import pandas as pd
import pytest

from arithinterp.viz.probes import (
    cosine_figure,
    pca_figure,
    probe_predictions_figure,
    probe_scores_figure,
)


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
    fig = probe_scores_figure(probe_table(), target="c0")
    assert [t.name for t in fig.data] == ["score", "shuffled", "random_model", "selectivity"]
    assert list(fig.data[0].y) == ["L0", "L1"] and list(fig.data[0].x) == ["=", "c0"]
    assert np.asarray(fig.data[0].z)[1, 0] == 0.75  # accuracy preferred over balanced
    assert "accuracy" in fig.layout.title.text
    fig = probe_scores_figure(probe_table(head=True), target="c0",
                                  metric="balanced_accuracy")
    assert list(fig.data[0].y) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    no_random = probe_table().assign(random_model=np.nan)
    assert "random_model" not in [t.name for t in probe_scores_figure(no_random,
                                                                          target="c0").data]
    with pytest.raises(ValueError, match="no probe rows"):
        probe_scores_figure(probe_table(), target="carry1")


def test_probe_predictions_against_truth():
    preds = pd.DataFrame({"truth": [1, 2, 3], "prediction": [1.1, 1.9, 3.2]})
    fig = probe_predictions_figure(preds, truth="truth", prediction="prediction")
    assert len(fig.data[0].x) == 3 and fig.data[1].name == "y = x"


def test_pca_scatter_colours_by_a_target():
    coords = np.arange(12, dtype=float).reshape(6, 2)
    fig = pca_figure(coords, np.array([0.5, 0.25]), np.array([0, 1, 0, 1, 2, 2]),
                         colour_title="carry_in[1]", hover=[f"p{i}" for i in range(6)])
    assert [t.name for t in fig.data] == ["0", "1", "2"]  # one trace per value, in order
    assert list(fig.data[1].x) == [2.0, 6.0]
    assert fig.layout.xaxis.title.text == "PC1 (50.0% of variance)"
    scale = pca_figure(coords, np.array([0.5, 0.25]), np.linspace(0, 1, 6),
                           colour_title="running_sum_1")
    assert len(scale.data) == 1 and scale.layout.coloraxis.colorbar.title.text == "running_sum_1"
    with pytest.raises(ValueError, match="one colour value per row"):
        pca_figure(coords, np.array([0.5, 0.25]), [0, 1], colour_title="x")


def test_cosine_heatmap_on_a_fixed_scale():
    fig = cosine_figure(np.eye(2), ["0", "1"], ["a", "b"], x_title="x", y_title="y")
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-1, 1)
    assert list(fig.data[0].x) == ["a", "b"]
    with pytest.raises(ValueError, match="labels give"):
        cosine_figure(np.eye(2), ["0"], ["a", "b"], x_title="x", y_title="y")
