"""Held-out accuracy per answer digit and by number of carries."""

import pandas as pd

from arithinterp.viz.evaluation import accuracy_by_carries_figure, digit_accuracy_figure


def test_accuracy_figures():
    fig = digit_accuracy_figure([0.5, 0.75, 1.0])
    assert list(fig.data[0].x) == ["c0", "c1", "c2"]
    by_carries = pd.DataFrame({"n_carries": [1, 0], "count": [5, 7], "exact_match": [0.2, 0.9]})
    fig = accuracy_by_carries_figure(by_carries)
    assert list(fig.data[0].x) == ["0", "1"] and list(fig.data[0].y) == [0.9, 0.2]
