"""Fourier spectra, an LLM's Fourier fit and the grokking figures."""

import pandas as pd

from arithinterp.viz.fourier import (
    fourier_spectrum_figure,
    grokking_curves_figure,
    llm_fourier_figure,
    neuron_frequencies_figure,
    progress_figure,
)


def test_fourier_spectrum_groups_bars_by_colour():
    spec = pd.DataFrame({"frequency": [0, 1, 2] * 2, "power": [0.5, 0.3, 0.2, 0.1, 0.1, 0.8],
                         "layer": [0] * 3 + [1] * 3})
    fig = fourier_spectrum_figure(spec, frequency="frequency", value="power", color="layer")
    assert [t.name for t in fig.data] == ["0", "1"] and list(fig.data[0].x) == ["0", "1", "2"]


def test_llm_fourier_against_its_control():
    table = pd.DataFrame({"source": ["W_E", "W_U", "resid_post", "resid_post"],
                          "layer": pd.array([None, None, 0, 1], dtype="Int64"),
                          "grouped_by": [None, None, "d", "d"], "freqs": "0,1,2,5",
                          "median_r2": [0.9, 0.8, 0.5, 0.7], "shuffled_r2": [0.4] * 4,
                          "n_features": 8})
    fig = llm_fourier_figure(table)
    assert list(fig.data[0].y) == [0.5, 0.7] and list(fig.data[1].y) == [0.4, 0.4]
    assert [s.y0 for s in fig.layout.shapes] == [0.9, 0.8]


def test_grokking_curves_are_on_log_axes_with_milestones():
    curve = pd.DataFrame({"step": [0, 100, 1000, 10000], "loss": [4.7, 0.01, 1e-4, 1e-5],
                          "digit_loss": [4.7, 20.0, 5.0, 0.01],
                          "exact_match": [0.0, 0.01, 0.3, 1.0],
                          "train_exact_match": [0.0, 1.0, 1.0, 1.0]})
    fig = grokking_curves_figure(curve, marks={"memorized": 100, "generalized": None})
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis2.type == "log"
    assert [s.x0 for s in fig.layout.shapes] == [100, 100]  # both panels; none for None
    test_acc = next(t for t in fig.data if t.name == "test accuracy")
    assert list(test_acc.x) == [100, 1000, 10000]  # step 0 has no place on a log axis


def test_progress_and_neuron_figures():
    rows = [{"step": s, "key_fraction": f, "gini_embedding": g, "gini_neuron_logit": g,
             "logits": kind, "split": split, "loss": 1.0, "accuracy": 0.5}
            for s, f, g in ((0, 0.01, 0.1), (500, 0.5, 0.6))
            for kind in ("full", "restricted", "excluded") for split in ("train", "test")]
    fig = progress_figure(pd.DataFrame(rows))
    names = [t.name for t in fig.data]
    assert len(names) == 6 + 3 and "excluded (train)" in names
    assert list(next(t for t in fig.data if t.name == "key fraction").y) == [0.01, 0.5]
    neurons = pd.DataFrame({"neuron": range(4), "frequency": [3, 3, 7, 0],
                            "fve": [0.9, 0.8, 0.2, float("nan")],
                            "key": [True, True, False, False]})
    fig = neuron_frequencies_figure(neurons)
    bars = {t.name: dict(zip(t.x, t.y, strict=True)) for t in fig.data}
    assert bars == {"key": {"3": 2}, "other": {"7": 1}}  # the dead neuron is left out
