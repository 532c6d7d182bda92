"""Single neurons: DLA, patching and activation by a property."""

import pandas as pd

from arithinterp.viz.neurons import activation_by_figure, neuron_dla_figure, neuron_patching_figure


def test_neuron_figures():
    table = pd.DataFrame({"component": ["L1.n3", "L1.n0"], "dla": [2.0, -1.0],
                          "dla_std": [0.5, 0.1]})
    fig = neuron_dla_figure(table)
    assert list(fig.data[0].x) == ["L1.n3", "L1.n0"] and list(fig.data[0].error_y.array) == \
        [0.5, 0.1]
    patched = pd.DataFrame({"component": ["L1.n3", "L1.n3"], "effect": [0.4, 0.3],
                            "direction": ["denoise", "noise"]})
    assert [t.name for t in neuron_patching_figure(patched).data] == ["denoise", "noise"]
    by = pd.DataFrame({"a0": [0, 1], "activation": [0.2, 1.5], "activation_std": [0.1, 0.2],
                       "count": [5, 7]})
    fig = activation_by_figure(by, "a0")
    assert list(fig.data[0].y) == [0.2, 1.5] and fig.layout.title.text == "Mean activation by a0"
