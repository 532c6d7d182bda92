"""Linear probes: targets from task metadata, activation features, scikit-learn fits, controls.

A probe reads one target (an operand digit, a carry, a running sum...) from one activation
site at one (layer, position), or (layer, head, position) for per-head sites. Every probe
is a scikit-learn Pipeline (StandardScaler, then LogisticRegression for classification or
Ridge for regression) fit on a train/test split BY PROBLEM: a problem's rows, repeats
included, all land on one side. Beside each probe's test scores sit its controls:

- ``shuffled``: the same probe fit on train labels permuted with a seeded generator;
- ``random_model``: the same probe on activations of a randomly initialised model of the
  same shape (``build_model`` with another seed);
- ``baseline``: the majority class (classification) or the train mean (regression).

``selectivity = score − shuffled`` for accuracy, balanced accuracy and R², and
``shuffled − score`` for MAE, so higher always means more information beyond the labels'
distribution. Probe weights are returned in the ORIGINAL activation space (the scaler is
folded in): ``logits = act @ coef.T + intercept``; a binary classifier has one row (the
logit of ``classes[1]``), a regressor one row.

By default a target is probed only at positions whose prefix already holds every operand
digit it depends on (``ProbeTarget.first_pos``); earlier positions can only score chance.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int, Real
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.core.cache import run_cached
from arithinterp.components import Component, hook_name, layer_label
from arithinterp.fields import check_float, check_int, described
from arithinterp.models import (
    HookedModel,
    LoadedModel,
    build_model,
    device_of,
    facts,
    head_out_weights,
)
from arithinterp.tasks import Dataset, Task, TaskSpec, make_dataset, sample_problems
from arithinterp.tasks.modular import fourier_features

ProbeKind = Literal["classification", "regression"]
SITES: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z",
                          "result")
HEAD_SITES = ("z", "result")  # result = z @ W_O per head (TransformerLens's hook_result)
GROUPS: tuple[str, ...] = ("operands", "answer", "carries", "partial_products", "running_sums")
# modular tasks, by name only: cos/sin(2πk·x/p) of a, b or the answer c, e.g. 'cos14_a'
FOURIER_TARGET = re.compile(r"(cos|sin)(\d+)_([abc])")
METRICS: dict[str, tuple[str, ...]] = {"classification": ("accuracy", "balanced_accuracy"),
                                       "regression": ("r2", "mae")}
PRIMARY = {"classification": "accuracy", "regression": "r2"}


# ---- targets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeTarget:
    """A quantity to read from activations: one integer per example."""

    name: str  # 'a1', 'c0', 'carry2', 'n_carries', 'pp_1_2', 'running_sum_3_mod10', ...
    kind: ProbeKind
    values: Real[Tensor, " batch"]  # integers; floats for Fourier targets
    group: str  # one of GROUPS, or 'fourier'
    first_pos: int  # first token position whose prefix holds every operand digit it uses


def _target_specs(spec: Task) -> list[tuple[str, ProbeKind, str, list[int], list[int]]]:
    """(name, kind, group, digits of a used, digits of b used) for every target of the task
    (a modular task: its residues a0, b0 and the answer c0)."""
    if spec.format == "modular":
        return [("a0", "classification", "operands", [0], []),
                ("b0", "classification", "operands", [], [0]),
                ("c0", "classification", "answer", [0], [0])]
    w, da, db = spec.answer_width, spec.digits_a, spec.digits_b
    every = (list(range(da)), list(range(db)))

    def upto(k: int) -> tuple[list[int], list[int]]:
        # A signed difference's digits depend on which operand is larger: on every digit.
        return every if spec.signed else (list(range(min(k, da - 1) + 1)),
                                          list(range(min(k, db - 1) + 1)))

    out: list[tuple[str, ProbeKind, str, list[int], list[int]]] = []
    out += [(f"a{i}", "classification", "operands", [i], []) for i in range(da)]
    out += [(f"b{j}", "classification", "operands", [], [j]) for j in range(db)]
    out += [(f"c{k}", "classification", "answer", *upto(k)) for k in range(w)]
    carry = "borrow" if spec.op == "sub" else "carry"
    out += [(f"{carry}{k}", "classification", "carries", *upto(k - 1)) for k in range(1, w)]
    out.append(("n_borrows" if spec.op == "sub" else "n_carries", "classification", "carries",
                *every))
    if spec.op == "mul":
        out += [(f"pp_{i}_{j}", "regression", "partial_products", [i], [j])
                for i in range(da) for j in range(db)]
        for k in range(w):
            out += [(f"running_sum_{k}", "regression", "running_sums", *upto(k)),
                    (f"running_sum_{k}_mod10", "classification", "running_sums", *upto(k)),
                    (f"running_sum_{k}_div10", "classification", "running_sums", *upto(k))]
    else:  # add / sub: the column sum a_k ± b_k ± carry_in plays the running sum's part
        out += [(f"column_sum_{k}", "regression", "running_sums", *upto(k)) for k in range(w)]
    return out


def target_names(spec: Task, groups: Sequence[str] = GROUPS) -> list[str]:
    """Names of every target the task defines in these groups (constant ones included)."""
    bad = sorted(set(groups) - set(GROUPS))
    if bad:
        raise ValueError(f"unknown target groups {bad}; known: {', '.join(GROUPS)}")
    return [name for name, _, group, _, _ in _target_specs(spec) if group in groups]


def _target_values(data: Dataset, name: str) -> Int[Tensor, " batch"]:
    """Values of a target computed from the dataset's metadata tensors."""
    head, _, rest = name.partition("_")
    if name.startswith(("carry", "borrow")):
        return data.carry_in[:, int(name.removeprefix("carry").removeprefix("borrow"))]
    if name in ("n_carries", "n_borrows"):
        return data.n_carries
    if head == "pp":
        i, j = map(int, rest.split("_"))
        return data.a_digits[:, i] * data.b_digits[:, j]
    if name.startswith(("running_sum_", "column_sum_")):
        parts = name.split("_")
        sums = data.column_sums[:, int(parts[2])]
        if len(parts) == 4:
            return sums % 10 if parts[3] == "mod10" else sums // 10
        return sums
    table = {"a": data.a_digits, "b": data.b_digits, "c": data.answer_digits}[name[0]]
    return table[:, int(name[1:])]


def make_targets(data: Dataset, names: Sequence[str] | None = None) -> list[ProbeTarget]:
    """Probe targets of the dataset's task, by name or group; groups skip constant targets.

    ``names=None`` means every group. Carries are ``carry_in[k]`` (borrows for subtraction;
    for multiplication ``carry_in[k] = c_{k-1} // 10``); ``running_sum_k`` is Bai et al.'s
    c_k (multiplication); addition and subtraction get ``column_sum_k`` instead. A modular
    task has a0, b0 (the residues) and c0 (the answer), and by name the regression targets
    ``cos<k>_a``, ``sin<k>_b``, ``cos<k>_c`` ...: cos/sin(2πk·x/p) (Nanda et al.'s features).
    """
    spec = data.spec
    specs = {s[0]: s for s in _target_specs(spec)}
    names = list(GROUPS) if names is None else list(names)
    if spec.format == "modular":
        specs |= {n: _fourier_spec(spec, n) for n in names if FOURIER_TARGET.fullmatch(n)}
    unknown = [n for n in names if n not in specs and n not in GROUPS]
    if unknown:
        raise ValueError(f"unknown targets {unknown} for task {spec.name}; known: groups "
                         f"{', '.join(GROUPS)} or names {', '.join(specs)}")
    pos = spec.operand_positions()
    out, seen = [], set()
    for requested in names:
        grouped = requested in GROUPS
        members = target_names(spec, [requested]) if grouped else [requested]
        for name in members:
            if name in seen:
                continue
            seen.add(name)
            _, kind, group, used_a, used_b = specs[name]
            values = _fourier_values(data, name) if group == "fourier" \
                else _target_values(data, name).long()
            if grouped and values.unique().numel() < 2:
                continue  # nothing to read out
            first = max([pos["a"][i] for i in used_a] + [pos["b"][j] for j in used_b])
            out.append(ProbeTarget(name, kind, values.clone(), group, first))
    return out


def _fourier_spec(spec: Task, name: str) -> tuple[str, ProbeKind, str, list[int], list[int]]:
    _, k, x = FOURIER_TARGET.fullmatch(name).groups()  # type: ignore[union-attr]
    if not 1 <= int(k) <= spec.radix // 2:
        raise ValueError(f"target {name}: frequency must be in 1..{spec.radix // 2} for "
                         f"{spec.name}, got {k}")
    return name, "regression", "fourier", [0] if x != "b" else [], [0] if x != "a" else []


def _fourier_values(data: Dataset, name: str) -> Tensor:
    fn, k, x = FOURIER_TARGET.fullmatch(name).groups()  # type: ignore[union-attr]
    values = {"a": data.a, "b": data.b, "c": data.answer}[x]
    cos, sin = fourier_features(values, data.spec.radix, int(k))
    return cos if fn == "cos" else sin


# ---- splits and the fitting core ----------------------------------------------------------
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


# ---- features from a model -----------------------------------------------------------------
def run_probe_features(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], sites: Sequence[str],
    layers: Sequence[int], *, batch_size: int = 256, progress: bool = False,
) -> dict[tuple[str, int, int | None], Float[Tensor, "batch pos feature"]]:
    """Activations per (site, layer, head or None) at every position, on the CPU."""
    bad = sorted(set(sites) - set(SITES))
    if bad:
        raise ValueError(f"unknown sites {bad}; known: {', '.join(SITES)}")
    hooks = {(s, L): hook_name("z" if s in HEAD_SITES else s, L) for s in sites for L in layers}
    cache = run_cached(model, tokens, sorted(set(hooks.values())), batch_size=batch_size,
                       progress=progress, desc="activations")
    out: dict[tuple[str, int, int | None], Tensor] = {}
    for (site, layer), hook in hooks.items():
        act = cache[hook]
        if site == "result":
            # [head d_head d_model]; no bias (it is per layer)
            w_o = head_out_weights(model)[0][layer].detach().cpu()
            act = torch.einsum("bphd,hdm->bphm", act, w_o)
        if site in HEAD_SITES:
            out.update({(site, layer, h): act[:, :, h] for h in range(act.shape[2])})
        else:
            out[(site, layer, None)] = act
    return out


# ---- the probe sweep -----------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeConfig:
    """Which probes to fit and how; None means every layer / every causally useful position."""

    sites: tuple[str, ...] = ("resid_post",)
    layers: tuple[int, ...] | None = None
    positions: tuple[int, ...] | None = None
    test_frac: float = 0.2
    cv: int | None = None
    # Inverse L2 strength (scikit-learn's C) on standardized features. 0.1 rather than 1.0:
    # a more constrained probe, and half the time (lbfgs needs ~40 rather than ~75 steps).
    logistic_c: float = 0.1
    ridge_alpha: float = 1.0
    # lbfgs steps; on the demo (2,000 problems) 50 moves scores by 0.001 on average (at
    # most 0.03) against 100 and saves a fifth of the time
    max_iter: int = 50
    shuffled_control: bool = True
    random_model_control: bool = True
    random_model_seed: int | None = None  # None: the model's own seed + 1
    batch_size: int = 256
    seed: int = described(0, "Seed of the problems and the split.")

    def __post_init__(self) -> None:
        if self.positions == ():
            raise ValueError("positions must be None (every useful position) or non-empty")
        if not self.sites or set(self.sites) - set(SITES):
            raise ValueError(f"sites must be a non-empty subset of {SITES}, got {self.sites}")
        check_float("test_frac", self.test_frac, min=0, max=1, min_open=True, max_open=True)
        check_int("cv", self.cv, min=2, optional=True)
        check_float("logistic_c", self.logistic_c, min=0, min_open=True)
        check_float("ridge_alpha", self.ridge_alpha, min=0, min_open=True)
        check_int("max_iter", self.max_iter, min=1)
        check_int("batch_size", self.batch_size, min=1)


@dataclass(frozen=True)
class ProbeResults:
    """A tidy table (one row per probe x metric), each probe's weights, and the test-set
    predictions of regression probes (one row per probe x test example: truth, prediction)."""

    table: pd.DataFrame
    weights: dict[str, Tensor] = field(repr=False)
    config: ProbeConfig
    predictions: pd.DataFrame = field(repr=False)

    def artifacts(self) -> tuple[pd.DataFrame, dict[str, Tensor]]:
        """What a caller saves: the table (parquet) and the weights (safetensors).

        Weight keys are ``{probe}.coef`` / ``.intercept`` / ``.classes`` where ``probe`` is
        the table's ``probe`` column; coef and intercept are in the original activation space.
        """
        return self.table, self.weights


def _probe_id(target: str, site: str, layer: int, head: int | None, pos: int) -> str:
    where = layer_label(layer) if head is None else Component("head", layer, head).name
    return f"{target}.{site}.{where}.pos{pos}"


def fit_probes(
    model: HookedModel | LoadedModel,
    data: Dataset,
    targets: Sequence[ProbeTarget],
    config: ProbeConfig | None = None,
    *,
    progress: bool = False,
) -> ProbeResults:
    """Probe every target at every (site, layer, [head,] position) `config` names, with
    controls.

    ``positions=None``: each target from its ``first_pos`` to the last position. The
    random-model control needs a LoadedModel with a ModelSpec (models trained here);
    for a bare model or a pretrained LLM its column is NaN.
    """
    cfg = config or ProbeConfig()
    loaded = model if isinstance(model, LoadedModel) else LoadedModel(model, None, None)
    spec = data.spec
    n_layers = facts(loaded.model).n_layers
    layer_list = list(range(n_layers)) if cfg.layers is None else list(cfg.layers)
    if bad := [L for L in layer_list if not 0 <= L < n_layers]:
        raise ValueError(f"layers must be in 0..{n_layers - 1}, got {bad}")
    if cfg.positions is not None and (bad := [p for p in cfg.positions
                                              if not 0 <= p < spec.seq_len]):
        raise ValueError(f"positions must be in 0..{spec.seq_len - 1}, got {bad}")
    if not targets:
        raise ValueError("no targets to probe")
    for t in targets:
        if t.values.shape[0] != len(data):
            raise ValueError(f"target {t.name} has {t.values.shape[0]} values for "
                             f"{len(data)} examples")

    split = split_by_problem(data.a, data.b, test_frac=cfg.test_frac, seed=cfg.seed)
    feats = run_probe_features(loaded.model, data.tokens, cfg.sites, layer_list,
                               batch_size=cfg.batch_size, progress=progress)
    random_feats = None
    if cfg.random_model_control and loaded.spec is not None:
        seed_r = loaded.spec.seed + 1 if cfg.random_model_seed is None else cfg.random_model_seed
        device = device_of(loaded.model)
        twin = build_model(replace(loaded.spec, seed=seed_r), spec, str(device)).eval()
        random_feats = run_probe_features(twin, data.tokens, cfg.sites, layer_list,
                                          batch_size=cfg.batch_size)

    def positions_of(t: ProbeTarget) -> list[int]:
        return list(range(t.first_pos, spec.seq_len)) if cfg.positions is None \
            else list(cfg.positions)

    labels = spec.position_labels()
    todo = [(key, t, p) for key in feats for t in targets for p in positions_of(t)]
    hyper = {"logistic_c": cfg.logistic_c, "ridge_alpha": cfg.ridge_alpha,
             "max_iter": cfg.max_iter}
    rows, weights, preds = [], {}, []
    for (site, layer, head), t, pos in tqdm(todo, desc="probes", disable=not progress,
                                            unit="probe"):
        fit = fit_probe(feats[(site, layer, head)][:, pos], t.values, t.kind, split,
                        seed=cfg.seed, shuffled=cfg.shuffled_control, cv=cfg.cv, **hyper)
        rand = None
        if random_feats is not None:
            rand = fit_probe(random_feats[(site, layer, head)][:, pos], t.values, t.kind,
                             split, seed=cfg.seed, shuffled=False, **hyper).scores
        probe = _probe_id(t.name, site, layer, head, pos)
        weights[f"{probe}.coef"], weights[f"{probe}.intercept"] = fit.coef, fit.intercept
        if fit.classes is not None:
            weights[f"{probe}.classes"] = fit.classes
        ident = {"probe": probe, "target": t.name, "site": site, "layer": layer, "head": head,
                 "pos": pos, "label": labels[pos]}
        if t.kind == "regression":
            preds.append(pd.DataFrame({**ident, "a": data.a[split.test].numpy(),
                                       "b": data.b[split.test].numpy(),
                                       "truth": t.values[split.test].numpy(),
                                       "prediction": fit.predictions}))
        for metric, score in fit.scores.items():
            sign = -1.0 if metric == "mae" else 1.0
            rows.append({
                **ident, "group": t.group, "kind": t.kind,
                "hook": hook_name("z" if site in HEAD_SITES else site, layer), "metric": metric,
                "score": score, "shuffled": fit.shuffled[metric],
                "random_model": float("nan") if rand is None else rand[metric],
                "baseline": fit.baseline[metric],
                "selectivity": sign * (score - fit.shuffled[metric]),
                "cv_mean": fit.cv_mean[metric], "cv_std": fit.cv_std[metric],
                "n_train": len(split.train), "n_test": len(split.test), "seed": cfg.seed,
            })
    table = pd.DataFrame(rows)
    predictions = pd.concat(preds, ignore_index=True) if preds else pd.DataFrame(
        columns=["probe", "target", "site", "layer", "head", "pos", "label", "a", "b", "truth",
                 "prediction"])
    for df in (table, predictions):
        df["head"] = df["head"].astype("Int64")
    return ProbeResults(table, weights, cfg, predictions)


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


def pca_projection(acts: Float[Tensor, "batch d"] | Float[np.ndarray, "batch d"], k: int = 2
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The activations' top-k principal components: (coords [batch, k] of the centred
    activations, explained-variance ratio [k]). Deterministic (full SVD), each component's
    sign fixed so its largest-|loading| dimension is positive."""
    x = np.asarray(acts.detach().cpu() if isinstance(acts, Tensor) else acts, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"activations must be [batch >= 2, d], got shape {x.shape}")
    if not 1 <= k <= min(x.shape):
        raise ValueError(f"k must be in 1..{min(x.shape)} for activations of shape {x.shape}, "
                         f"got {k}")
    centred = x - x.mean(0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:k] * np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(1)])[:, None]
    total = float((sv ** 2).sum())
    explained = (sv[:k] ** 2) / total if total > 0 else np.zeros(k)
    return centred @ vt.T, explained


def direction_cosines(a: Float[Tensor, "m da"] | Float[np.ndarray, "m da"],
                      b: Float[Tensor, "n db"] | Float[np.ndarray, "n db"]) -> np.ndarray:
    """Cosine similarity [m, n] between the rows of `a` and of `b` (e.g. a probe's class
    directions against each other, or against the unembedding rows of the digits); a zero
    row gives NaN."""
    x, y = (np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v, dtype=np.float64)
            for v in (a, b))
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"directions must be [m, d] and [n, d] with the same d, got "
                         f"{x.shape} and {y.shape}")
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x @ y.T) / np.outer(nx, ny)


def make_probe_dataset(task: Task, n: int, seed: int = 0) -> Dataset:
    """n distinct problems of the task, drawn uniformly with a seed, for probing."""
    a, b = sample_problems(task, n, torch.Generator().manual_seed(seed))
    return make_dataset(task, a, b)
