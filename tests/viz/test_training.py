"""The training curve."""

import pandas as pd

from arithinterp.viz.training import training_curve_figure


def test_training_curve_has_loss_exact_match_and_one_line_per_digit():
    curve = pd.DataFrame([{"step": s, "loss": 3 / s, "lr": 1e-3, "exact_match": s / 40,
                           "digit": d, "digit_accuracy": s / 30} for s in (10, 20, 30)
                          for d in range(3)])
    fig = training_curve_figure(curve)
    names = [t.name for t in fig.data]
    assert names == ["loss", "exact match", "c0", "c1", "c2"]
    assert list(fig.data[0].x) == [10, 20, 30]
    assert fig.layout.xaxis2.title.text == "step"
