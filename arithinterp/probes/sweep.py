"""The probe sweep: activations of a model at every site, layer (and head) and position a
`ProbeConfig` names, one probe per target there with its controls (shuffled labels, a
random model of the same shape, the baseline), into one tidy table, weights and predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.components import Component, hook_name, layer_label
from arithinterp.core.cache import run_cached
from arithinterp.fields import check_float, check_int, described
from arithinterp.models import (
    HookedModel,
    LoadedModel,
    build_model,
    device_of,
    facts,
    head_out_weights,
)
from arithinterp.probes.fit import fit_probe, split_by_problem
from arithinterp.probes.targets import ProbeTarget
from arithinterp.tasks import Dataset

SITES: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z",
                          "result")
HEAD_SITES = ("z", "result")  # result = z @ W_O per head (TransformerLens's hook_result)


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
