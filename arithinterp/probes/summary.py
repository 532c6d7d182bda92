"""Summaries of a probe table: the best probe per target and site and where its information
first appears, and the running sums at the positions that predict each answer digit.
"""

from __future__ import annotations

import pandas as pd

from arithinterp.probes.fit import PRIMARY
from arithinterp.tasks import TaskSpec


def compute_probe_summary(table: pd.DataFrame, *, threshold: float = 0.95) -> pd.DataFrame:
    """Per (target, site): the best probe and where the score first exceeds threshold.

    Scores are each target's primary metric (accuracy, or R² for regression). "First" is the
    earliest position, then the earliest layer (then head) there: where the information
    first appears. The best probe's controls come along.
    """
    primary = table[table["metric"] == table["kind"].map(PRIMARY)]
    rows = []
    for (target, site), g in primary.groupby(["target", "site"], sort=False):
        best = g.loc[g["score"].idxmax()]
        above = g[g["score"] > threshold].sort_values(["pos", "layer", "head"])
        first = above.iloc[0] if len(above) else None
        rows.append({
            "target": target, "site": site, "metric": best["metric"],
            "best_score": best["score"], "best_layer": best["layer"],
            "best_head": best["head"], "best_pos": best["pos"], "best_label": best["label"],
            "shuffled": best["shuffled"], "random_model": best["random_model"],
            "baseline": best["baseline"], "selectivity": best["selectivity"],
            "first_layer": None if first is None else first["layer"],
            "first_pos": None if first is None else first["pos"],
            "first_label": None if first is None else first["label"],
            "first_score": float("nan") if first is None else first["score"],
        })
    out = pd.DataFrame(rows)
    for col in ("best_layer", "best_head", "best_pos", "first_layer", "first_pos"):
        out[col] = out[col].astype("Int64")
    return out


def compute_running_sum_summary(table: pd.DataFrame, spec: TaskSpec) -> pd.DataFrame:
    """Per running sum c_k (multiplication; column sums otherwise): the regression probe at
    the position that predicts answer digit k, in the layer where its MAE is lowest, with
    its controls (shuffled labels, random model, the train mean). Columns: digit, target,
    layer, pos, label, r2, mae, shuffled_mae, random_model_mae, baseline_mae."""
    name = "running_sum" if spec.op == "mul" else "column_sum"
    rows = []
    for k, target in enumerate(spec.answer_positions()):
        t = table[(table["target"] == f"{name}_{k}") & (table["pos"] == target - 1)]
        if t.empty:
            continue
        mae = t[t["metric"] == "mae"]
        best = mae.loc[mae["score"].idxmin()]
        r2 = t[(t["metric"] == "r2") & (t["layer"] == best["layer"])
               & (t["site"] == best["site"])].iloc[0]
        rows.append({"digit": k, "target": best["target"], "layer": int(best["layer"]),
                     "pos": int(best["pos"]), "label": best["label"], "r2": float(r2["score"]),
                     "mae": float(best["score"]), "shuffled_mae": float(best["shuffled"]),
                     "random_model_mae": float(best["random_model"]),
                     "baseline_mae": float(best["baseline"])})
    return pd.DataFrame(rows, columns=["digit", "target", "layer", "pos", "label", "r2", "mae",
                                       "shuffled_mae", "random_model_mae", "baseline_mae"])
