"""Gain against forgetting and perplexity per fine-tuning arm."""

import pandas as pd
import pytest

from arithinterp.viz.finetune import (
    finetune_curves_figure,
    gain_forgetting_figure,
    gain_perplexity_figure,
)


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
    fig = gain_perplexity_figure(table)
    points = {t.name: t for t in fig.data}
    assert list(points["selected"].x) == [0.4] and list(points["selected"].y) == \
        pytest.approx([10.0])  # perplexity 10 -> 11: +10 %
    assert list(points["random mean"].x) == pytest.approx([0.2])
    assert list(points["random mean"].y) == pytest.approx([10.0])  # mean of 0 % and 20 %
    assert list(points["none"].y) == [0.0] and "perplexity" in fig.layout.yaxis.title.text
    forgetting = {t.name: t for t in gain_forgetting_figure(table).data}
    assert list(forgetting["random"].y) == pytest.approx([0.0, -0.2])


def test_finetune_curves_one_line_per_run_one_legend_entry_per_arm():
    curves = pd.DataFrame([{"arm": arm, "draw": draw, "seed": 0, "step": step,
                            "exact_match": step / 10 + draw, "loss": None}
                           for arm, draws in (("selected", 1), ("random", 2))
                           for draw in range(draws) for step in (5, 0, 10)])
    fig = finetune_curves_figure(curves)
    assert len(fig.data) == 3
    assert [t.showlegend for t in fig.data if t.name == "random"] == [True, False]
    assert all(list(t.x) == [0, 5, 10] for t in fig.data)  # in step order
    assert len(finetune_curves_figure(curves, value="loss").data) == 0  # no loss recorded
