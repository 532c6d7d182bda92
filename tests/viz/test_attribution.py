"""Direct logit attribution, the logit lens and attribution patching against exact patching."""

import numpy as np
import pandas as pd

from arithinterp.viz.attribution import (
    attribution_scatter_figure,
    digit_attribution_figure,
    dla_figure,
    logit_lens_figure,
)
from tests.viz.conftest import patch_table


def test_dla_logit_lens_and_attribution_figures():
    dla = pd.DataFrame({"component": ["embed", "L0H0", "L0.mlp"], "layer": [None, 0, 0],
                        "head": [None, 0, None], "kind": ["embed", "head", "mlp"],
                        "value": [0.1, 0.5, 2.0], "std": [0.1, 0.1, 0.3]})
    fig = dla_figure(dla)
    assert {t.name for t in fig.data} == {"embed", "head", "mlp"}
    lens = pd.DataFrame([{"stage": s, "layer": None, "digit": d, "pos": 4 + d, "token": "x",
                          "target": f"c{d}", "accuracy": a, "mean_rank": 1.0, "mean_prob": 0.5}
                         for s, a in (("embed", 0.1), ("L0", 0.5), ("L1", 0.9))
                         for d in range(2)])
    fig = logit_lens_figure(lens)
    assert list(fig.data[0].y) == ["embed", "L0", "L1"] and list(fig.data[0].x) == ["c0", "c1"]
    assert np.asarray(fig.data[0].z)[2, 1] == 0.9
    exact = patch_table(site="z", heads=2)
    attribution = exact.assign(value=exact["value"] * 0.9)
    fig = attribution_scatter_figure(attribution, exact)
    assert len(fig.data[0].x) == len(exact) and fig.data[-1].name == "y = x"
    np.testing.assert_allclose(fig.data[0].y, np.asarray(fig.data[0].x) * 0.9)


def test_digit_attribution_is_signed_and_symmetric_around_zero():
    table = pd.DataFrame({"digit": [0, 1, 0, 1], "component": ["L0H0", "L0H0", "L1.mlp", "L1.mlp"],
                          "value": [0.5, -2.0, 1.0, 0.25]})
    fig = digit_attribution_figure(table)
    assert list(fig.data[0].x) == ["c0", "c1"] and list(fig.data[0].y) == ["L0H0", "L1.mlp"]
    assert np.asarray(fig.data[0].z)[0, 1] == -2.0
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-2.0, 2.0)
