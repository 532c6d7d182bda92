"""The fitting core on plain arrays: a train/test split by problem, and one standardized
linear probe (scikit-learn) with its shuffled-label and majority/mean baselines, its weights
folded back into activation space (``logits = act @ coef.T + intercept``).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int, Real
from torch import Tensor

ProbeKind = Literal["classification", "regression"]
METRICS: dict[str, tuple[str, ...]] = {"classification": ("accuracy", "balanced_accuracy"),
                                       "regression": ("r2", "mae")}
PRIMARY = {"classification": "accuracy", "regression": "r2"}


@dataclass(frozen=True)
class ProbeSplit:
    """Row indices of the train and test sides and each row's problem id."""

    train: Int[Tensor, " n_train"]
    test: Int[Tensor, " n_test"]
    problem: Int[Tensor, " batch"]


def split_by_problem(
    a: Int[Tensor, " batch"], b: Int[Tensor, " batch"], *, test_frac: float = 0.2, seed: int = 0
) -> ProbeSplit:
    """Seeded split whose side is a function of the problem (a, b): repeats stay together.

    Distinct problems are ranked by a hash of (seed, a, b) and the lowest-ranked
    round(test_frac * n_problems) go to test, so a problem keeps its side across datasets
    drawn with the same seed unless the test size changes.
    """
    if not 0 < test_frac < 1:
        raise ValueError(f"test_frac must be in (0, 1), got {test_frac}")
    keys = list(zip(a.tolist(), b.tolist(), strict=True))
    problems = sorted(set(keys), key=lambda k: hashlib.blake2b(
        f"{seed}:{k[0]}:{k[1]}".encode(), digest_size=8).digest())
    n_test = round(test_frac * len(problems))
    if not 0 < n_test < len(problems):
        raise ValueError(f"cannot split {len(problems)} distinct problems with test_frac "
                         f"{test_frac}: one side would be empty")
    rank = {k: r for r, k in enumerate(problems)}
    problem = torch.tensor([rank[k] for k in keys], dtype=torch.long)
    is_test = problem < n_test
    return ProbeSplit(is_test.logical_not().nonzero().flatten(), is_test.nonzero().flatten(),
                      problem)


@dataclass(frozen=True)
class ProbeFit:
    """One fitted probe: test scores, its controls and its weights in activation space."""

    scores: dict[str, float]
    shuffled: dict[str, float]  # NaN when not computed
    baseline: dict[str, float]
    cv_mean: dict[str, float]  # NaN without cross-validation
    cv_std: dict[str, float]
    coef: Float[Tensor, "out feature"]
    intercept: Float[Tensor, " out"]
    classes: Int[Tensor, " n_class"] | None
    predictions: Real[np.ndarray, " n_test"]  # the probe's output on the test rows


def _pipeline(kind: ProbeKind, n_classes: int, *, logistic_c: float, ridge_alpha: float,
              max_iter: int):
    # lazy, as in this module's other scikit-learn imports: importing it costs ~1 s
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "regression":
        head = Ridge(alpha=ridge_alpha)
    elif n_classes < 2:  # LogisticRegression refuses a single class
        head = DummyClassifier(strategy="most_frequent")
    elif n_classes == 2:  # same objective; Newton steps converge in a few iterations
        head = LogisticRegression(C=logistic_c, max_iter=max_iter, tol=1e-3,
                                  solver="newton-cholesky")
    else:
        # tol 1e-3: test scores are stable to the third decimal and fits run ~2x faster
        head = LogisticRegression(C=logistic_c, max_iter=max_iter, tol=1e-3)
    return make_pipeline(StandardScaler(), head)


def _score(kind: ProbeKind, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        mean_absolute_error,
        r2_score,
    )

    if kind == "classification":
        return {"accuracy": float(accuracy_score(y, pred)),
                "balanced_accuracy": float(balanced_accuracy_score(y, pred))}
    return {"r2": float(r2_score(y, pred)), "mae": float(mean_absolute_error(y, pred))}


def _cross_validate(pipe, kind: ProbeKind, x: np.ndarray, y: np.ndarray, groups: np.ndarray,
                    folds: int) -> tuple[dict[str, float], dict[str, float]]:
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    per_fold: list[dict[str, float]] = []
    for tr, te in GroupKFold(n_splits=folds).split(x, y, groups):
        est = clone(pipe)
        if kind == "classification" and np.unique(y[tr]).size < 2:
            continue  # a fold with one class says nothing about a linear read-out
        per_fold.append(_score(kind, y[te], est.fit(x[tr], y[tr]).predict(x[te])))
    metrics = METRICS[kind]
    if not per_fold:
        return dict.fromkeys(metrics, float("nan")), dict.fromkeys(metrics, float("nan"))
    return ({m: float(np.mean([f[m] for f in per_fold])) for m in metrics},
            {m: float(np.std([f[m] for f in per_fold])) for m in metrics})


def fit_probe(
    features: Float[Tensor, "batch feature"] | Float[np.ndarray, "batch feature"],
    labels: Real[Tensor, " batch"] | Real[np.ndarray, " batch"],
    kind: ProbeKind,
    split: ProbeSplit,
    *,
    seed: int = 0,
    shuffled: bool = True,
    cv: int | None = None,
    logistic_c: float = 0.1,
    ridge_alpha: float = 1.0,
    max_iter: int = 50,
) -> ProbeFit:
    """Fit one standardized linear probe on the train rows, score it on the test rows."""
    if kind not in METRICS:
        raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
    if cv is not None and cv < 2:
        raise ValueError(f"cv must be None or >= 2 folds, got {cv}")
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    y = y.astype(np.int64) if kind == "classification" else y.astype(np.float64)
    tr, te = split.train.numpy(), split.test.numpy()
    x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
    n_classes = int(np.unique(y_tr).size)
    make = lambda: _pipeline(kind, n_classes, logistic_c=logistic_c,  # noqa: E731
                             ridge_alpha=ridge_alpha, max_iter=max_iter)
    nan = dict.fromkeys(METRICS[kind], float("nan"))
    with warnings.catch_warnings():
        # non-convergence at max_iter, classes absent from a tiny test side: expected here
        warnings.simplefilter("ignore")
        pipe = make().fit(x_tr, y_tr)
        predictions = pipe.predict(x_te)
        scores = _score(kind, y_te, predictions)
        shuffled_scores = nan
        if shuffled:
            gen = torch.Generator().manual_seed(seed)
            perm = torch.randperm(len(y_tr), generator=gen).numpy()
            shuffled_scores = _score(kind, y_te, make().fit(x_tr, y_tr[perm]).predict(x_te))
        if kind == "classification":
            values, counts = np.unique(y_tr, return_counts=True)
            constant = np.full_like(y_te, values[np.argmax(counts)])
        else:
            constant = np.full_like(y_te, y_tr.mean())
        baseline = _score(kind, y_te, constant)
        cv_mean, cv_std = nan, nan
        if cv is not None:
            cv_mean, cv_std = _cross_validate(make(), kind, x_tr, y_tr,
                                              split.problem.numpy()[tr], cv)
    coef, intercept, classes = _weights(pipe, kind, x.shape[1])
    return ProbeFit(scores, shuffled_scores, baseline, cv_mean, cv_std, coef, intercept, classes,
                    predictions)


def _weights(pipe, kind: ProbeKind, n_features: int):
    """(coef, intercept, classes) with the scaler folded in: act @ coef.T + intercept."""
    scaler, head = pipe[0], pipe[-1]
    if not hasattr(head, "coef_"):  # the single-class dummy: a constant prediction
        coef, intercept = np.zeros((1, n_features)), np.zeros(1)
    else:
        coef = np.atleast_2d(head.coef_) / scaler.scale_
        intercept = np.atleast_1d(head.intercept_) - coef @ scaler.mean_
    classes = torch.as_tensor(head.classes_, dtype=torch.long) if kind == "classification" \
        else None
    return (torch.as_tensor(coef, dtype=torch.float32), torch.as_tensor(intercept,
            dtype=torch.float32), classes)
