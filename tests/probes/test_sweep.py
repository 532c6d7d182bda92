"""The probe sweep: the table, weights and predictions on a tiny model, default positions,
refused settings, and the controls on the shipped model."""

import numpy as np
import pytest

from arithinterp.checkpoints import load_model
from arithinterp.components import hook_name
from arithinterp.models import LoadedModel
from arithinterp.probes.fit import split_by_problem
from arithinterp.probes.sweep import ProbeConfig, fit_probes
from arithinterp.probes.targets import make_probe_dataset, make_targets


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
