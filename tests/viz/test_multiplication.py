"""The multiplication study's arms: curves per answer digit and values per digit."""

import pandas as pd
import pytest

from arithinterp.viz.multiplication import ARM_COLORS, arm_digits_figure, digit_curves_figure


def test_digit_curves_one_panel_per_digit_one_line_per_arm_and_seed():
    curves = pd.DataFrame([{"arm": arm, "seed": seed, "step": step, "digit": d,
                            "digit_accuracy": step / 100, "digit_loss": 1 / step}
                           for arm in ("sft", "icot") for seed in (0, 1)
                           for step in (10, 20) for d in range(3)])
    fig = digit_curves_figure(curves)
    assert len(fig.data) == 2 * 2 * 3
    assert [a.text for a in fig.layout.annotations] == ["c0", "c1", "c2"]
    icot = [t for t in fig.data if t.name == "icot"]
    assert sum(t.showlegend for t in icot) == 1 and icot[0].line.color == ARM_COLORS["icot"]
    assert {t.line.dash for t in icot} == {"solid", "dot"}  # seed 0, other seeds
    assert fig.layout.yaxis.range == (0, 1.02)
    assert digit_curves_figure(curves, value="digit_loss").layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="value"):
        digit_curves_figure(curves, value="exact_match")


def test_arm_digits_bars_at_the_mean_over_seeds_and_a_point_per_seed():
    comparison = pd.DataFrame({"arm": ["sft", "sft", "aux"], "seed": [0, 1, 0],
                               "acc_1": [0.2, 0.4, 0.9], "acc_0": [1.0, 0.8, 1.0]})
    fig = arm_digits_figure(comparison, prefix="acc_", title="t", y_title="accuracy")
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["sft", "aux"] and list(bars[0].x) == ["c0", "c1"]
    assert list(bars[0].y) == pytest.approx([0.9, 0.3])
    assert len([t for t in fig.data if t.type == "scatter"]) == 3
    with pytest.raises(ValueError, match="no loss_<k> columns"):
        arm_digits_figure(comparison, prefix="loss_", title="t", y_title="loss")
