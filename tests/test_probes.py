"""Probes: targets equal Python arithmetic, planted directions are found, splits respect
problems, weights reproduce the scores, controls behave on the shipped model."""

import numpy as np
import pandas as pd
import pytest
import torch

from arithinterp.checkpoints import load_model
from arithinterp.components import hook_name
from arithinterp.models import LoadedModel
from arithinterp.probes import (
    ProbeConfig,
    compute_probe_summary,
    direction_cosines,
    fit_probe,
    fit_probes,
    make_probe_dataset,
    make_targets,
    pca_projection,
    split_by_problem,
    target_names,
)
from arithinterp.tasks import TaskSpec


def _digits(n: int, width: int) -> list[int]:
    return [(n // 10**k) % 10 for k in range(width)]


# ---- targets -------------------------------------------------------------------------------
def test_multiplication_targets_match_python_arithmetic():
    spec = TaskSpec(op="mul", digits_a=3, digits_b=2)
    data = make_probe_dataset(spec, 40, seed=1)
    targets = {t.name: t for t in make_targets(data)}
    w = spec.answer_width
    for row, (a, b) in enumerate(zip(data.a.tolist(), data.b.tolist(), strict=True)):
        ad, bd = _digits(a, 3), _digits(b, 2)
        c_prev = 0
        for k in range(w):
            c = sum(ad[i] * bd[k - i] for i in range(3) if 0 <= k - i < 2) + c_prev // 10
            assert _digits(a * b, w)[k] == c % 10  # the running sum's last digit is c_k
            for name, want in ((f"running_sum_{k}", c), (f"running_sum_{k}_mod10", c % 10),
                               (f"running_sum_{k}_div10", c // 10),
                               (f"carry{k}", c_prev // 10), (f"c{k}", c % 10)):
                if name in targets:  # constant targets are left out of groups
                    assert targets[name].values[row] == want, (name, a, b)
            c_prev = c
        for i in range(3):
            assert targets[f"a{i}"].values[row] == ad[i]
            for j in range(2):
                assert targets[f"pp_{i}_{j}"].values[row] == ad[i] * bd[j]
    assert targets["pp_0_1"].kind == "regression" and targets["carry1"].kind == "classification"
    assert "running_sum_4_div10" not in targets  # c_4 < 10 always: constant, skipped
    # a digit is readable from its own token on; sums need every digit below them
    pos = spec.operand_positions()
    assert targets["a2"].first_pos == pos["a"][2] and targets["b1"].first_pos == pos["b"][1]
    assert targets["pp_2_0"].first_pos == max(pos["a"][2], pos["b"][0])
    assert targets["running_sum_1"].first_pos == max(pos["a"][0], pos["b"][0])


@pytest.mark.parametrize("op", ["add", "sub"])
def test_carries_and_borrows_match_python_arithmetic(op):
    spec = TaskSpec(op=op, digits_a=3, digits_b=3)
    data = make_probe_dataset(spec, 48, seed=2)
    word = "borrow" if op == "sub" else "carry"
    targets = {t.name: t for t in make_targets(data, ["carries", "running_sums", "c0"])}
    for row, (a, b) in enumerate(zip(data.a.tolist(), data.b.tolist(), strict=True)):
        ad, bd = _digits(a, 4), _digits(b, 4)
        flow, flows = 0, []
        for k in range(spec.answer_width):
            flows.append(flow)
            col = ad[k] + bd[k] + flow if op == "add" else ad[k] - bd[k] - flow
            assert targets[f"column_sum_{k}"].values[row] == col
            flow = col // 10 if op == "add" else int(col < 0)
            if k:
                assert targets[f"{word}{k}"].values[row] == flows[k]
        assert targets["n_borrows" if op == "sub" else "n_carries"].values[row] == \
            sum(1 for f in flows if f)
        assert targets["c0"].values[row] == (a + b if op == "add" else a - b) % 10
    assert not any(n.startswith("running_sum") or n.startswith("pp_") for n in targets)


def test_unknown_targets_and_groups_are_refused(tiny_task):
    data = make_probe_dataset(tiny_task, 16)
    with pytest.raises(ValueError, match="unknown targets"):
        make_targets(data, ["carry9"])
    with pytest.raises(ValueError, match="unknown target groups"):
        target_names(tiny_task, ["digits"])
    assert target_names(tiny_task, ["operands"]) == ["a0", "a1", "b0", "b1"]


# ---- the fitting core on plain arrays ------------------------------------------------------
def _planted(n: int = 600, d: int = 24, seed: int = 0):
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(n, d)) * gen.uniform(0.5, 3, size=d) + gen.normal(size=d) * 5
    direction = gen.normal(size=d)
    return x, direction


def test_a_planted_direction_is_recovered_and_shuffled_labels_score_chance():
    x, direction = _planted()
    score = (x - x.mean(0)) @ direction
    labels = (score > 0).astype(np.int64)
    split = split_by_problem(torch.arange(len(x)), torch.zeros(len(x), dtype=torch.long),
                             seed=0)
    fit = fit_probe(x, labels, "classification", split, seed=0)
    assert fit.scores["accuracy"] > 0.95 and fit.scores["balanced_accuracy"] > 0.95
    assert 0.35 < fit.shuffled["accuracy"] < 0.65
    assert 0.4 < fit.baseline["accuracy"] < 0.6 and fit.baseline["balanced_accuracy"] == 0.5
    # the weights are in the original activation space: they reproduce the probe by hand
    test = split.test.numpy()
    logit = x[test] @ fit.coef.double().numpy().T + fit.intercept.double().numpy()
    by_hand = fit.classes.numpy()[(logit[:, 0] > 0).astype(int)]
    assert (by_hand == labels[test]).mean() == pytest.approx(fit.scores["accuracy"])
    cosine = np.dot(fit.coef[0].double().numpy() * x.std(0), direction * x.std(0))
    assert cosine > 0

    target = score + np.random.default_rng(1).normal(size=len(x)) * 0.05 * score.std()
    reg = fit_probe(torch.tensor(x, dtype=torch.float32), torch.tensor(target), "regression",
                    split, cv=3)
    assert reg.scores["r2"] > 0.95 and reg.shuffled["r2"] < 0.1 and reg.baseline["r2"] <= 0
    assert reg.cv_mean["r2"] > 0.95 and reg.cv_std["r2"] >= 0
    assert reg.classes is None and reg.coef.shape == (1, x.shape[1])


def test_a_single_class_on_the_train_side_predicts_that_class():
    x, _ = _planted(40)
    split = split_by_problem(torch.arange(40), torch.zeros(40, dtype=torch.long))
    fit = fit_probe(x, np.zeros(40, dtype=np.int64), "classification", split)
    assert fit.scores["accuracy"] == 1.0 and torch.equal(fit.coef, torch.zeros(1, x.shape[1]))


def test_split_is_by_problem_even_when_problems_repeat(tiny_task):
    data = make_probe_dataset(tiny_task, 50, seed=3)
    order = torch.randperm(150, generator=torch.Generator().manual_seed(0))
    a, b = data.a.repeat(3)[order], data.b.repeat(3)[order]
    split = split_by_problem(a, b, test_frac=0.2, seed=5)
    side = {}
    for i in split.train.tolist():
        side[(int(a[i]), int(b[i]))] = "train"
    for i in split.test.tolist():
        assert side.get((int(a[i]), int(b[i])), "test") == "test"
    assert len(split.test) == 3 * 10 and len(split.train) + len(split.test) == 150
    again = split_by_problem(a, b, test_frac=0.2, seed=5)
    assert torch.equal(again.test, split.test)
    other = split_by_problem(a, b, test_frac=0.2, seed=6)
    assert not torch.equal(other.test, split.test)
    with pytest.raises(ValueError, match="one side would be empty"):
        split_by_problem(a[:2], b[:2], test_frac=0.2)


# ---- the sweep on a tiny model -------------------------------------------------------------
def test_sweep_table_weights_and_controls_on_a_tiny_model(tiny_model, tiny_spec, tiny_task):
    data = make_probe_dataset(tiny_task, 64, seed=0)
    targets = make_targets(data, ["a0", "carry1", "column_sum_1"])
    loaded = LoadedModel(tiny_model, tiny_spec, tiny_task, tiny_task.vocab)
    eq = tiny_task.prompt_len - 1
    res = fit_probes(loaded, data, targets, ProbeConfig(sites=("resid_post", "z", "result"),
                                                        layers=(1,), positions=(eq,)))
    table, weights = res.artifacts()
    n_heads = tiny_model.cfg.n_heads
    assert table["probe"].nunique() == len(targets) * (1 + 2 * n_heads)
    assert len(table) == 2 * table["probe"].nunique()
    assert set(table["metric"]) == {"accuracy", "balanced_accuracy", "r2", "mae"}
    assert table[["score", "shuffled", "random_model", "baseline"]].notna().all().all()
    assert (table["n_train"] + table["n_test"] == 64).all() and table["seed"].eq(0).all()
    assert table["hook"].isin([hook_name("resid_post", 1), hook_name("z", 1)]).all()
    assert table["label"].eq("=").all()
    acc = table[table["metric"] == "accuracy"]
    assert np.allclose(acc["selectivity"], acc["score"] - acc["shuffled"])
    mae = table[table["metric"] == "mae"]
    assert np.allclose(mae["selectivity"], mae["shuffled"] - mae["score"])
    assert table.loc[table["site"] == "resid_post", "head"].isna().all()
    preds = res.predictions  # regression probes only, one row per test problem
    assert set(preds["target"]) == {"column_sum_1"}
    assert len(preds) == (1 + 2 * n_heads) * (64 - table["n_train"].iloc[0])
    one = preds[preds["probe"] == preds["probe"].iloc[0]]
    r2 = 1 - ((one["truth"] - one["prediction"]) ** 2).sum() / \
        ((one["truth"] - one["truth"].mean()) ** 2).sum()
    assert r2 == pytest.approx(table.set_index(["probe", "metric"]).loc[
        (one["probe"].iloc[0], "r2"), "score"])

    # saved weights (activation space) reproduce each probe's test accuracy
    split = split_by_problem(data.a, data.b)
    _, cache = tiny_model.run_with_cache(data.tokens)
    z = cache[hook_name("z", 1)][:, eq]
    values = {t.name: t.values for t in targets}
    for _, row in acc.iterrows():
        key, head = row["probe"], row["head"]
        if row["site"] == "resid_post":
            act = cache[hook_name("resid_post", 1)][:, eq]
        else:
            act = z[:, head] if row["site"] == "z" else z[:, head] @ tiny_model.W_O[1, head]
        coef, classes = weights[f"{key}.coef"].double(), weights[f"{key}.classes"]
        logits = act[split.test].double() @ coef.T + weights[f"{key}.intercept"].double()
        pick = (logits[:, 0] > 0).long() if len(coef) == 1 else logits.argmax(-1)
        accuracy = (classes[pick] == values[row["target"]][split.test]).double().mean()
        assert float(accuracy) == pytest.approx(row["score"], abs=1.5 / len(split.test))


def test_default_positions_start_where_the_digits_are_seen(tiny_model, tiny_task):
    data = make_probe_dataset(tiny_task, 64, seed=0)
    targets = make_targets(data, ["a0", "carry1"])
    res = fit_probes(tiny_model, data, targets, ProbeConfig(
        layers=(0,), shuffled_control=False, random_model_control=False))
    got = res.table.groupby("target")["pos"].agg(["min", "max", "nunique"])
    for t in targets:
        assert tuple(got.loc[t.name]) == (t.first_pos, tiny_task.seq_len - 1,
                                          tiny_task.seq_len - t.first_pos)
    assert res.table["shuffled"].isna().all() and res.table["random_model"].isna().all()
    cv = fit_probes(tiny_model, data, targets[:1], ProbeConfig(positions=(3,), cv=2))
    assert cv.table["cv_mean"].notna().all() and cv.table["random_model"].isna().all()


def test_bad_sweep_settings_are_refused(tiny_model, tiny_task):
    data = make_probe_dataset(tiny_task, 16)
    targets = make_targets(data, ["a0"])
    with pytest.raises(ValueError, match="sites"):
        fit_probes(tiny_model, data, targets, ProbeConfig(sites=("resid_final",)))
    with pytest.raises(ValueError, match="layers"):
        fit_probes(tiny_model, data, targets, ProbeConfig(layers=(2,)))
    with pytest.raises(ValueError, match="positions"):
        fit_probes(tiny_model, data, targets, ProbeConfig(positions=(99,)))
    with pytest.raises(ValueError, match="no targets"):
        fit_probes(tiny_model, data, [])
    with pytest.raises(ValueError, match="test_frac"):
        ProbeConfig(test_frac=1.0)


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


# ---- the shipped model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    return load_model("add3-reversed")


def test_controls_on_the_shipped_model(shipped):
    data = make_probe_dataset(shipped.task, 500, seed=0)
    targets = make_targets(data, ["a0", "carry1"])
    eq = shipped.task.prompt_len - 1
    a0 = shipped.task.operand_positions()["a"][0]
    res = fit_probes(shipped, data, targets, ProbeConfig(layers=(0,), positions=(a0, eq)))
    acc = res.table[res.table["metric"] == "accuracy"].set_index(["target", "pos"])
    own = acc.loc[("a0", a0)]
    assert own["score"] > 0.98 and own["shuffled"] < 0.25 and own["baseline"] < 0.25
    assert own["random_model"] > 0.9  # a token's identity is readable even untrained
    carry = acc.loc[("carry1", eq)]  # the carry out of column 0, where c0 is predicted
    assert carry["score"] > 0.95 and carry["selectivity"] > 0.3
    assert carry["random_model"] < carry["score"]


def test_running_sum_summary_picks_the_best_layer_at_each_predicting_position():
    from arithinterp.probes import compute_running_sum_summary

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


def test_pca_projection_matches_scikit_learn_up_to_sign():
    from sklearn.decomposition import PCA

    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(50, 6, generator=gen) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    coords, explained = pca_projection(acts, k=2)
    ref = PCA(n_components=2, svd_solver="full").fit(acts.numpy().astype(np.float64))
    oracle = ref.transform(acts.numpy().astype(np.float64))
    for j in range(2):
        assert np.allclose(np.abs(coords[:, j]), np.abs(oracle[:, j]), atol=1e-8)
    assert np.allclose(explained, ref.explained_variance_ratio_)
    assert explained[0] > 0.6  # the first axis carries the largest scale
    with pytest.raises(ValueError, match="k must be in 1..6"):
        pca_projection(acts, k=7)
    with pytest.raises(ValueError, match="batch >= 2"):
        pca_projection(acts[:1])


def test_direction_cosines():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [0.0, -3.0]])
    cos = direction_cosines(a, torch.tensor(b))
    assert np.allclose(cos[:2], [[1.0, 0.0], [2 ** -0.5, -(2 ** -0.5)]])
    assert np.isnan(cos[2]).all()  # a zero direction has no angle
    with pytest.raises(ValueError, match="same d"):
        direction_cosines(a, np.ones((2, 3)))
