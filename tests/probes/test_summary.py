"""Probe summaries: the earliest position then layer, and the running sums."""

import pandas as pd
import pytest

from arithinterp.probes.summary import compute_probe_summary, compute_running_sum_summary
from arithinterp.tasks import TaskSpec


def test_summary_finds_the_earliest_position_then_layer():
    rows = [("t", "classification", L, p, s) for L, p, s in
            [(0, 5, 0.5), (0, 6, 0.99), (1, 5, 0.97), (1, 6, 1.0)]]
    table = pd.DataFrame([
        {"target": t, "kind": k, "site": "resid_post", "layer": L, "head": pd.NA, "pos": p,
         "label": f"p{p}", "metric": "accuracy", "score": s, "shuffled": 0.1,
         "random_model": 0.2, "baseline": 0.1, "selectivity": s - 0.1}
        for t, k, L, p, s in rows])
    summary = compute_probe_summary(table).iloc[0]
    assert (summary["first_layer"], summary["first_pos"]) == (1, 5)
    assert (summary["best_layer"], summary["best_pos"], summary["best_score"]) == (1, 6, 1.0)


def test_running_sum_summary_picks_the_best_layer_at_each_predicting_position():
    spec = TaskSpec(op="mul", digits_a=2, digits_b=2)
    rows = []
    for k, target in enumerate(spec.answer_positions()):
        for layer, mae in ((0, 5.0 + k), (1, 1.0 + k)):
            for pos in (target - 1, target - 2):  # only the predicting position counts
                for metric, score in (("mae", mae if pos == target - 1 else 0.1),
                                      ("r2", 0.9 - 0.1 * layer)):
                    rows.append({"target": f"running_sum_{k}", "site": "resid_post",
                                 "layer": layer, "pos": pos, "label": "x", "metric": metric,
                                 "score": score, "shuffled": 20.0, "random_model": 15.0,
                                 "baseline": 21.0})
    out = compute_running_sum_summary(pd.DataFrame(rows), spec)
    assert out["digit"].tolist() == [0, 1, 2, 3] and (out["layer"] == 1).all()
    assert out["mae"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out["r2"].tolist() == pytest.approx([0.8] * 4)
    assert out["pos"].tolist() == [p - 1 for p in spec.answer_positions()]
    assert (out["shuffled_mae"] == 20.0).all() and (out["baseline_mae"] == 21.0).all()
