"""The localization suite: every analysis of one model on one set of minimal pairs, for a
model trained on a task and a pretrained LLM alike.

`compute_localization` takes pairs from a prompt source (`sources.PromptSource`: a task, or
an LLM prompt suite), their metric and a `LocalizePlan`, and runs what the plan names:
attribution patching of the grids it estimates; exact activation patching of each grid —
every cell (residual stream, attention and MLP outputs by layer x position; heads by
position and over all positions; head q / k / v / pattern), or only the components the
attribution estimate ranks highest, or none; the estimate's agreement with exact patching;
a component ranking; path patching (every sender to the logits, and to the q / k / v of the
most important last-layer head; or only the top heads' direct paths); direct logit
attribution; the logit lens; the source's operand-attention table; and a knockout of the top
heads. It returns tables and tensors keyed by their `schema` artifacts; the caller decides
where they go.

`localize_task` is a task model's way in (`LocalizeConfig`), `llm.localize_llm` an LLM's. A
model that cannot do the task gives confident-looking rankings of noise: `localize_task`
builds the pairs (from the model's held-out problems by default), measures the clean
accuracy on them and warns below `min_accuracy`; `only_correct` keeps the pairs whose clean
and corrupt problems the model answers correctly (as Zhang et al. 2024 do), and the summary
says how many pairs of how many asked were used, and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Literal

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.analysis.attribution import compute_dla, compute_logit_lens
from arithinterp.analysis.attribution_patching import compare_with_exact, sweep_attribution
from arithinterp.analysis.localize import (
    compute_knockout,
    max_random_sets,
    rank_components,
    select_components,
)
from arithinterp.analysis.patching import (
    Cell,
    PatchResult,
    PatchSpec,
    Site,
    patch_each,
    sweep_patching,
)
from arithinterp.analysis.paths import sweep_paths
from arithinterp.analysis.sources import PromptSource, TaskSource
from arithinterp.components import Component
from arithinterp.core.cache import act_names, run_cached
from arithinterp.core.contrast import DIRECTIONS, Direction
from arithinterp.core.metrics import (
    METRIC_KINDS,
    AnswerMetric,
    MetricKind,
    answer_metric,
    default_digit,
    digit_differs,
    restrict_pairs,
)
from arithinterp.fields import check_choice, check_float, check_int, described
from arithinterp.models import HookedModel, device_of, facts
from arithinterp.schema import Artifact
from arithinterp.tasks import (
    Dataset,
    PromptPairs,
    Task,
    make_carry_pairs,
    make_dataset,
    make_digit_pairs,
)
from arithinterp.tasks.data import make_test_split


@dataclass(frozen=True)
class GridConfig:
    """One exact patching grid, the directions to run it in, and whether attribution
    patching also estimates it (denoising)."""

    site: Site
    by_pos: bool = True
    directions: tuple[Direction, ...] = ("denoise",)
    attribution: bool = False

    def __post_init__(self) -> None:
        PatchSpec(self.site, self.by_pos)  # validates site and by_pos
        if not self.directions or set(self.directions) - set(DIRECTIONS):
            raise ValueError(f"directions must be a non-empty subset of {DIRECTIONS}, got "
                             f"{self.directions}")

    @property
    def spec(self) -> PatchSpec:
        return PatchSpec(self.site, self.by_pos)


Exact = Literal["all", "top", "none"]


@dataclass(frozen=True)
class LocalizePlan:
    """What the suite runs and how large: each grid with how it is patched exactly ('all'
    cells; the 'top' `n_exact` components by the attribution estimate, each at every
    position; or 'none': estimated only), the estimate's agreement table, per-prompt values,
    paths ('all' senders, the 'top' heads' direct paths, or 'none'), the knockout of the
    `top_k` heads, the activation cache, and the batch size of DLA and the logit lens."""

    grids: tuple[tuple[GridConfig, Exact], ...]
    n_exact: int = 20
    agreement: bool = True  # the estimate against each exact grid (ATTRIBUTION_VS_EXACT)
    per_prompt: bool = True  # every prompt's patched metric (PATCHING_VALUES)
    allow_unnormalized: bool = False  # NaN effects, not an error, if the metric does not move
    paths: Literal["all", "top", "none"] = "all"
    top_k: int = 3
    knockout: Literal["zero", "mean", "resample"] = "mean"
    n_random: int = 5
    seed: int = 0
    save_cache: bool = True
    batch_size: int = 256

    def __post_init__(self) -> None:
        for grid, exact in self.grids:
            check_choice("exact", exact, ("all", "top", "none"))
            if exact == "top" and (grid.site not in ("z", "mlp_out") or not grid.attribution
                                   or grid.directions != ("denoise",)):
                raise ValueError("exact 'top' ranks heads (z) or MLPs (mlp_out) by their "
                                 f"attribution estimate, denoising; got {grid}")
        check_choice("paths", self.paths, ("all", "top", "none"))


BOTH: tuple[Direction, ...] = ("denoise", "noise")
DEFAULT_GRIDS: tuple[GridConfig, ...] = (
    GridConfig("resid_pre", directions=BOTH, attribution=True),
    GridConfig("attn_out"), GridConfig("mlp_out"),
    GridConfig("z", directions=BOTH, attribution=True),
    GridConfig("z", by_pos=False, directions=BOTH, attribution=True),
    *(GridConfig(site, by_pos=False) for site in ("q", "k", "v", "pattern")),
)


@dataclass(frozen=True)
class LocalizeConfig:
    """Which minimal pairs, which metric, which grids, and how large each analysis is."""

    name: str | None = None  # experiment name; None: from the corruption ('a1', 'carry2')
    n_pairs: int = described(256, "Clean/corrupt minimal pairs.")
    corrupt: Literal["digit", "carry"] = described(
        "digit", "digit: change one operand digit; carry: flip the carry into an answer "
        "position.")
    operand: Literal["a", "b"] = described("a", "Operand whose digit changes.")
    digit: int = described(1, "Which digit of it (0 = least significant).")
    position: int = described(1, "Answer position whose carry flips.")
    answer_digit: int | None = described(
        None, "Answer digit the metric reads (default: the one the digit corruption changes, "
        "or the one the flipped carry flows into).")
    metric: MetricKind = described("logit_diff", "What to measure at the answer digit.")
    task: Task | None = None  # None: the model's own task (else one with its vocabulary)
    prompts: Literal["held_out", "fresh"] = described(
        "held_out", "Clean problems from the model's held-out split, or fresh seeded draws.")
    only_correct: bool = described(
        False, "Keep only pairs the model answers correctly (clean and corrupt).")
    min_accuracy: float = 0.5  # warn when clean accuracy on the pairs is below this
    n_eval: int = 256  # held-out prompts for DLA, logit lens, attention and knockout
    grids: tuple[GridConfig, ...] = DEFAULT_GRIDS
    paths: bool = True
    top_k: int = described(3, "Components to knock out together.")
    knockout: Literal["zero", "mean", "resample"] = "mean"
    n_random: int = 5
    seed: int = described(0, "Seed for pairs and random draws.")
    save_cache: bool = True

    def __post_init__(self) -> None:
        for name in ("n_pairs", "n_eval", "top_k"):
            check_int(name, getattr(self, name), min=1)
        check_int("n_random", self.n_random, min=0)
        check_choice("corrupt", self.corrupt, ("digit", "carry"))
        check_choice("metric", self.metric, METRIC_KINDS)
        check_choice("prompts", self.prompts, ("held_out", "fresh"))
        check_float("min_accuracy", self.min_accuracy, min=0, max=1)
        if not self.grids:
            raise ValueError("grids must name at least one patching grid")
        if self.name is not None:
            schema.localize_key(self.name)  # validates the name

    @property
    def experiment(self) -> str:
        """The experiment's name: 'a1' (digit 1 of a changes), 'carry2', or `name`."""
        if self.name is not None:
            return self.name
        return f"{self.operand}{self.digit}" if self.corrupt == "digit" else \
            f"carry{self.position}"

    @property
    def key(self) -> str:
        """The run's stage key (and folder) of this experiment: 'localize/a1'."""
        return schema.localize_key(self.experiment)

    @property
    def plan(self) -> LocalizePlan:
        """The suite's plan: every grid patched in full."""
        return LocalizePlan(tuple((g, "all") for g in self.grids),
                            paths="all" if self.paths else "none", top_k=self.top_k,
                            knockout=self.knockout, n_random=self.n_random, seed=self.seed,
                            save_cache=self.save_cache)

    def check(self, task: Task) -> None:
        """Refuse what the task cannot do, before anything runs or is written."""
        if self.corrupt == "digit":
            width = task.digits_a if self.operand == "a" else task.digits_b
            if not 0 <= self.digit < width:
                raise ValueError(f"digit must be in 0..{width - 1} for operand {self.operand} "
                                 f"of {task.name}, got {self.digit}")
        else:
            if task.op == "mul":
                raise ValueError("carry pairs are defined for op 'add' and 'sub', not 'mul'; "
                                 "corrupt a digit instead")
            top = min(task.answer_width - 1, max(task.digits_a, task.digits_b))
            if not 1 <= self.position <= top:
                raise ValueError(f"position must be in 1..{top} for {task.name} (no carry flows "
                                 f"into position 0), got {self.position}")
        if self.answer_digit is not None and not 0 <= self.answer_digit < task.answer_width:
            raise ValueError(f"answer_digit must be in 0..{task.answer_width - 1}, got "
                             f"{self.answer_digit}")


@dataclass(frozen=True)
class Localization:
    """Tables and tensor groups of one localization, keyed by their schema artifacts, and
    the heads the knockout (and the top paths) took."""

    tables: dict[Artifact, pd.DataFrame]
    tensors: dict[Artifact, dict[str, Tensor]]
    metadata: dict[Artifact, dict[str, str]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    selected: list[Component] = field(default_factory=list)


def _default_digit(pairs: PromptPairs, config: LocalizeConfig) -> int:
    """The answer digit the metric reads when the config leaves it open."""
    if config.answer_digit is not None:
        return config.answer_digit
    if config.corrupt == "carry":
        return config.position  # the digit the flipped carry flows into
    return default_digit(pairs)


def make_pairs(task: Task, config: LocalizeConfig, pool: Dataset | None = None
               ) -> tuple[PromptPairs, int, int]:
    """Minimal pairs, the answer digit the metric reads, and how many pairs were drawn
    before those that leave that digit unchanged were dropped (their logit difference is 0
    whatever is patched)."""
    config.check(task)
    if config.corrupt == "digit":
        pairs = make_digit_pairs(task, config.n_pairs, operand=config.operand,
                                 digit=config.digit, seed=config.seed, pool=pool)
    else:
        pairs = make_carry_pairs(task, config.n_pairs, position=config.position,
                                 seed=config.seed, pool=pool)
    digit = _default_digit(pairs, config)
    return restrict_pairs(pairs, digit_differs(pairs, digit)), digit, len(pairs)


def _ranked(model: HookedModel, frames: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """Heads by their all-position (else per-position) z effect, MLPs by their mlp_out effect
    (per position, or of the top MLPs at every position), denoising; None when the exact grids
    have neither."""
    parts = []
    for key in (schema.grid_key("z", False, "denoise"), schema.grid_key("z", True, "denoise")):
        if key in frames:
            parts.append(frames[key])
            break
    mlp = schema.grid_key("mlp_out", True, "denoise")
    if mlp in frames and not facts(model).attn_only:
        parts.append(frames[mlp])
    return rank_components(pd.concat(parts, ignore_index=True)) if parts else None


def pair_tensors(pairs: PromptPairs) -> dict[str, Tensor]:
    """The pairs as `schema.PAIRS` stores them: each side's tokens and operands."""
    out = {}
    for side, prompts in zip(schema.PAIR_SIDES, (pairs.clean, pairs.corrupt), strict=True):
        keys = schema.pair_keys(side)
        out.update({keys["tokens"]: prompts.tokens, keys["a"]: prompts.a, keys["b"]: prompts.b})
    return out


def task_pairs(task: Task, stored: dict, change: str) -> PromptPairs:
    """A task's minimal pairs back from what `pair_tensors` stored (tensors or arrays: the
    datasets are rebuilt from the operands)."""
    sides = [schema.pair_keys(side) for side in schema.PAIR_SIDES]
    clean, corrupt = (make_dataset(task, torch.as_tensor(stored[k["a"]]),
                                   torch.as_tensor(stored[k["b"]])) for k in sides)
    return PromptPairs(clean, corrupt, change)


def _prompt_tensors(result: PatchResult, grid: str) -> dict[str, Tensor]:
    keys = schema.prompt_keys(grid)
    return {keys["values"]: result.values, keys["normalized"]: result.normalized_per_prompt(),
            keys["clean"]: result.clean, keys["corrupted"]: result.corrupted}


def attribution_estimate(attribution: pd.DataFrame, comp: Component) -> float:
    """Attribution patching's estimate of patching `comp` at every position (normalized): a
    head's all-position cell, an MLP's per-position cells summed (the estimate is linear)."""
    site = "z" if comp.kind == "head" else "mlp_out"
    rows = attribution[(attribution["site"] == site) & (attribution["component"] == comp.name)]
    return float(rows["normalized"].sum())


def _top(attribution: pd.DataFrame, n: int) -> list[Component]:
    """The n components of an estimated grid whose estimate is largest in size."""
    comps = [Component.parse(c) for c in dict.fromkeys(attribution["component"])]
    return sorted(comps, key=lambda c: -abs(attribution_estimate(attribution, c)))[:n]


def _exact_rows(model: HookedModel, pairs: PromptPairs, metric: AnswerMetric,
                comps: list[Component], clean: Tensor, corrupted: Tensor,
                progress: bool) -> pd.DataFrame:
    """Rows of `schema.PATCHING` for components patched exactly at every position
    (denoising, one hooked forward pass each): value, normalized (1 = the clean metric),
    effect."""
    cells = [Cell("z", c.layer, c.head) if c.kind == "head" else Cell("mlp_out", c.layer)
             for c in comps]
    patched = patch_each(model, pairs.corrupt.tokens, pairs.clean.tokens, cells, metric,
                         progress=progress)
    c, k = float(clean.mean()), float(corrupted.mean())
    rows = []
    for comp, values in zip(comps, patched, strict=True):
        mean = float(values.mean())
        norm = (mean - k) / (c - k) if c != k else float("nan")
        rows.append({"method": "exact", "site": "z" if comp.kind == "head" else "mlp_out",
                     "by_pos": False, "direction": "denoise", "layer": comp.layer,
                     "head": comp.head, "pos": None, "token": None, "component": comp.name,
                     "value": mean, "normalized": norm, "effect": norm, "metric": metric.label})
    table = pd.DataFrame(rows, columns=list(schema.PATCHING.columns))
    table["head"] = table["head"].astype("Int64")
    table["pos"] = table["pos"].astype("Int64")
    return table


def compute_localization(model: HookedModel, source: PromptSource, pairs: PromptPairs,
                         metric: AnswerMetric, plan: LocalizePlan, *, eval_prompts,
                         progress: bool = True) -> Localization:
    """Run the plan's analyses (see the module docstring) on `pairs`, scored by `metric`
    (DLA on the clean prompts; the logit lens, the source's operand attention and the
    knockout on `eval_prompts`). The summary says what every localization reports: the
    change, the metric and where it is read, its clean and corrupted means, the position
    labels."""
    f = facts(model)
    grids = [(g, exact) for g, exact in plan.grids if not (g.site == "mlp_out" and f.attn_only)]
    steps = tqdm(total=len(grids) + 6, desc="localize", disable=not progress, unit="step")
    with torch.inference_mode():
        device = device_of(model)
        clean = metric(model(pairs.clean.tokens.to(device)))
        corrupted = metric(model(pairs.corrupt.tokens.to(device)))
    tables: dict[Artifact, pd.DataFrame] = {}
    estimates = [(schema.grid_key(g.site, g.by_pos, "denoise"),
                  sweep_attribution(model, pairs, g.spec, metric)) for g, _ in grids
                 if g.attribution]
    attr_frames = [e.to_frame() for _, e in estimates]
    estimated = dict(zip((key for key, _ in estimates), attr_frames, strict=True))
    if estimates:
        tables[schema.ATTRIBUTION] = pd.concat(attr_frames, ignore_index=True)
    steps.update()

    exact: dict[str, PatchResult] = {}
    frames: dict[str, pd.DataFrame] = {}  # exact rows by grid key
    patched, prompt_values, axes = [], {}, {}
    for g, how in grids:
        if how == "top":
            key = schema.grid_key(g.site, g.by_pos, "denoise")
            frames[key] = _exact_rows(model, pairs, metric, _top(estimated[key], plan.n_exact),
                                      clean, corrupted, progress)
            patched.append(frames[key])
        for direction in g.directions if how == "all" else ():
            result = sweep_patching(model, pairs, g.spec, metric, direction=direction,
                                    progress=progress)
            key = schema.grid_key(g.site, g.by_pos, direction)
            exact[key] = result
            if plan.per_prompt:
                prompt_values.update(_prompt_tensors(result, key))
                axes[key] = json.dumps(list(g.spec.axes) + ["batch"])
            frames[key] = result.to_frame(allow_unnormalized=plan.allow_unnormalized)
            patched.append(frames[key])
        steps.update()
    tables[schema.PATCHING] = pd.concat(patched, ignore_index=True)
    if estimates and plan.agreement:
        tables[schema.ATTRIBUTION_VS_EXACT] = pd.DataFrame([
            {"grid": key, **compare_with_exact(e, exact[key])} for key, e in estimates
            if key in exact])
    steps.update()

    ranked = _ranked(model, frames)
    selected: list[Component] = []
    if ranked is not None:
        tables[schema.RANKING] = ranked
        heads = ranked[ranked["kind"] == "head"]
        if len(heads):
            selected = select_components(heads, top_k=min(plan.top_k, len(heads)))
    if plan.paths == "all":
        path_frames = [sweep_paths(model, pairs, metric)]
        last = f.n_layers - 1
        top_last = ranked[(ranked["kind"] == "head") & (ranked["layer"] == last)] \
            if ranked is not None else ranked
        if last > 0 and top_last is not None and len(top_last):
            receiver = Component.parse(top_last.iloc[0]["component"])
            inputs = ("q",) if f.n_kv_heads != f.n_heads else ("q", "k", "v")
            path_frames += [sweep_paths(model, pairs, metric, receiver=receiver,
                                        receiver_input=inp) for inp in inputs]
        tables[schema.PATHS] = pd.concat(path_frames, ignore_index=True)
    elif plan.paths == "top" and selected:
        tables[schema.PATHS] = sweep_paths(model, pairs, metric, senders=selected)
    steps.update()

    if metric.kind == "logit_diff":
        tables[schema.DLA] = compute_dla(model, pairs.clean, metric, batch_size=plan.batch_size)
    steps.update()
    tables[schema.LOGIT_LENS] = compute_logit_lens(model, eval_prompts,
                                                   batch_size=plan.batch_size)
    tables[schema.OPERAND_ATTENTION] = source.operand_attention(model, eval_prompts)
    steps.update()
    if selected:
        n_random = min(plan.n_random, max_random_sets(model, selected))
        tables[schema.KNOCKOUT] = compute_knockout(
            model, eval_prompts, selected, method=plan.knockout, n_random=n_random,
            seed=plan.seed)
    steps.update()
    tensors: dict[Artifact, dict[str, Tensor]] = {schema.PAIRS: pair_tensors(pairs)}
    metadata = {}
    if plan.per_prompt:
        tensors[schema.PATCHING_VALUES] = prompt_values
        metadata[schema.PATCHING_VALUES] = axes
    if plan.save_cache:
        names = act_names(model, ["z", "resid_post"])
        tensors[schema.ACTIVATION_CACHE] = run_cached(model, pairs.clean.tokens, names)
    steps.update()
    steps.close()
    summary = {"change": pairs.change, "metric": metric.label, "metric_pos": metric.pos,
               "n_pairs": len(pairs), "clean_metric": float(clean.mean()),
               "corrupted_metric": float(corrupted.mean()),
               "position_labels": pairs.position_labels()}
    return Localization(tables, tensors, metadata, summary, selected)


def localize_task(model: HookedModel, task: Task, config: LocalizeConfig, *,
                  pool: Dataset | None = None, progress: bool = True) -> Localization:
    """A task model's localization experiment: the config's pairs, their accuracy check,
    then the suite with the config's plan (see the module docstring).

    `pool`: the model's held-out problems, where pairs' clean problems and the evaluation
    prompts come from when ``config.prompts == 'held_out'``.
    """
    if config.prompts == "held_out" and pool is None:
        raise ValueError("prompts='held_out' needs the model's held-out problems (pool); "
                         "pass them or use prompts='fresh'")
    held_out = pool if config.prompts == "held_out" else None
    pairs, digit, n_drawn = make_pairs(task, config, held_out)
    warnings = []
    if n_drawn > len(pairs):
        warnings.append(f"used {len(pairs)} of the {n_drawn} pairs drawn: "
                        f"{n_drawn - len(pairs)} leave answer digit c{digit} unchanged")
    source = TaskSource(task)
    clean_ok, corrupt_ok = source.correct(model, pairs.clean), source.correct(model,
                                                                              pairs.corrupt)
    clean_acc, corrupt_acc = float(clean_ok.double().mean()), float(corrupt_ok.double().mean())
    if config.only_correct:
        keep = clean_ok & corrupt_ok
        if not keep.any():
            raise ValueError(f"only_correct: the model answers none of the {len(pairs)} pairs "
                             "correctly (clean and corrupt); nothing to localize")
        if not keep.all():
            warnings.append(f"only_correct kept {int(keep.sum())} of {len(pairs)} pairs "
                            "(clean and corrupt answered correctly)")
        pairs = restrict_pairs(pairs, keep)
    elif clean_acc < config.min_accuracy:
        warnings.append(f"the model answers only {clean_acc:.1%} of the clean prompts "
                        f"correctly (below {config.min_accuracy:.0%}): effects describe a model "
                        "that cannot do the task; consider only_correct (--only-correct)")
    eval_data = pool[: config.n_eval] if held_out is not None else \
        make_test_split(task, config.n_eval, seed=config.seed + 1)
    result = compute_localization(model, source, pairs,
                                  answer_metric(pairs, digit, config.metric), config.plan,
                                  eval_prompts=eval_data, progress=progress)
    summary = {"experiment": config.experiment, "task": task.name,
               "task_spec": schema.to_json(task), **result.summary, "answer_digit": digit,
               "prompts": config.prompts, "n_requested": config.n_pairs,
               "clean_accuracy": clean_acc, "corrupt_accuracy": corrupt_acc,
               "selected": [c.name for c in result.selected], "warnings": warnings}
    return replace(result, summary=summary)
