"""The fitting core: planted directions are found, weights reproduce the scores, splits
respect problems."""

import numpy as np
import pytest
import torch

from arithinterp.probes.fit import fit_probe, split_by_problem
from arithinterp.probes.targets import make_probe_dataset


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
