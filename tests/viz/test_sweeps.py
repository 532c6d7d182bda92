"""The sweep figure: means, bands and clickable trials."""

import pandas as pd
import pytest

from arithinterp.viz.sweeps import SWEEP_POINTS, sweep_figure


def test_sweep_figure_means_bands_and_clickable_trials():
    table = pd.DataFrame({
        "trial": [f"t{i}" for i in range(6)], "run": [f"t{i}" for i in range(6)],
        "status": ["done"] * 5 + ["failed"], "format": ["plain"] * 4 + ["reversed"] * 2,
        "n_train": [10, 10, 100, 100, 10, 100], "seed": [0, 1, 0, 1, 0, 0],
        "exact_match": [0.1, 0.3, 0.8, 1.0, 0.5, float("nan")]})
    fig = sweep_figure(table, x="n_train", color="format", log_x=True)
    plain = next(t for t in fig.data if t.name == "format=plain")
    assert list(plain.x) == [10, 100] and list(plain.y) == pytest.approx([0.2, 0.9])
    bands = [t for t in fig.data if t.fill == "tonexty"]
    assert len(bands) == 1  # only plain has two seeds per point; failed trials are left out
    trials = [t for t in fig.data if t.meta == SWEEP_POINTS]
    assert sorted(r[0] for t in trials for r in t.customdata) == ["t0", "t1", "t2", "t3", "t4"]
    assert fig.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="'d_model' is not a column"):
        sweep_figure(table, x="d_model")
