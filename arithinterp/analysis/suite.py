"""The localization suite: every analysis of one model on one set of minimal pairs.

`compute_localization` builds the pairs (from the model's held-out problems by default),
then runs exact activation patching over the grids its config names (residual stream,
attention and MLP outputs by layer x position; heads by position and over all positions;
head q / k / v / pattern), attribution patching with its agreement with exact patching,
path patching (every sender to the logits, and to the q / k / v of the most important
last-layer head), direct logit attribution, the logit lens, the operand-digit attention
table, a component ranking and a knockout check of the top components. It returns tables
and tensors keyed by their `schema` artifacts; the caller decides where they go.

A model that cannot do the task gives confident-looking rankings of noise: the suite
measures the clean accuracy on its pairs and warns below `min_accuracy`; `only_correct`
keeps the pairs whose clean and corrupt problems the model answers correctly (as Zhang et
al. 2024 do), and the summary says how many pairs of how many asked were used, and why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.analysis.attention import compute_operand_attention
from arithinterp.analysis.attribution import compute_dla, compute_logit_lens
from arithinterp.analysis.attribution_patching import compare_with_exact, sweep_attribution
from arithinterp.analysis.localize import (
    compute_knockout,
    max_random_sets,
    rank_components,
    select_components,
)
from arithinterp.analysis.metrics import (
    METRIC_KINDS,
    MetricKind,
    answer_metric,
    default_digit,
    digit_differs,
    restrict_pairs,
)
from arithinterp.analysis.patching import (
    DIRECTIONS,
    Direction,
    PatchResult,
    PatchSpec,
    Site,
    sweep_patching,
)
from arithinterp.analysis.paths import sweep_paths
from arithinterp.cache import act_names, run_cached
from arithinterp.components import Component
from arithinterp.evaluate import teacher_forced_correct
from arithinterp.fields import check_choice, check_float, check_int, described
from arithinterp.models import HookedModel, device_of, facts
from arithinterp.schema import Artifact
from arithinterp.tasks import (
    Dataset,
    PromptPairs,
    Task,
    make_carry_pairs,
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
    """Tables and tensor groups of one localization, keyed by their schema artifacts."""

    tables: dict[Artifact, pd.DataFrame]
    tensors: dict[Artifact, dict[str, Tensor]]
    metadata: dict[Artifact, dict[str, str]] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


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


def _ranked(model: HookedModel, exact: dict[str, PatchResult]) -> pd.DataFrame | None:
    """Heads by their all-position (else per-position) z effect, MLPs by their largest
    per-position effect, denoising; None when the grids have neither."""
    frames = []
    for key in (schema.grid_key("z", False, "denoise"), schema.grid_key("z", True, "denoise")):
        if key in exact:
            frames.append(exact[key].to_frame())
            break
    mlp = schema.grid_key("mlp_out", True, "denoise")
    if mlp in exact and not facts(model).attn_only:
        frames.append(exact[mlp].to_frame())
    return rank_components(pd.concat(frames, ignore_index=True)) if frames else None


def _prompt_tensors(result: PatchResult, grid: str) -> dict[str, Tensor]:
    keys = schema.prompt_keys(grid)
    return {keys["values"]: result.values, keys["normalized"]: result.normalized_per_prompt(),
            keys["clean"]: result.clean, keys["corrupted"]: result.corrupted}


def compute_localization(model: HookedModel, task: Task, config: LocalizeConfig, *,
                         pool: Dataset | None = None, progress: bool = True) -> Localization:
    """Run the whole suite (see the module docstring) on `model`.

    `pool`: the model's held-out problems, where pairs' clean problems and the evaluation
    prompts come from when ``config.prompts == 'held_out'``.
    """
    if config.prompts == "held_out" and pool is None:
        raise ValueError("prompts='held_out' needs the model's held-out problems (pool); "
                         "pass them or use prompts='fresh'")
    source = pool if config.prompts == "held_out" else None
    pairs, digit, n_drawn = make_pairs(task, config, source)
    warnings = []
    if n_drawn > len(pairs):
        warnings.append(f"used {len(pairs)} of the {n_drawn} pairs drawn: "
                        f"{n_drawn - len(pairs)} leave answer digit c{digit} unchanged")
    clean_ok = teacher_forced_correct(model, pairs.clean)
    corrupt_ok = teacher_forced_correct(model, pairs.corrupt)
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
    metric = answer_metric(pairs, digit, config.metric)
    eval_data = pool[: config.n_eval] if source is not None else \
        make_test_split(task, config.n_eval, seed=config.seed + 1)
    f = facts(model)
    grids = [g for g in config.grids if not (g.site == "mlp_out" and f.attn_only)]
    steps = tqdm(total=len(grids) + 6, desc="localize", disable=not progress, unit="step")
    tables: dict[Artifact, pd.DataFrame] = {}
    prompt_values: dict[str, Tensor] = {}
    axes: dict[str, str] = {}

    exact, frames = {}, []
    for g in grids:
        for direction in g.directions:
            result = sweep_patching(model, pairs, g.spec, metric, direction=direction)
            key = schema.grid_key(g.site, g.by_pos, direction)
            exact[key] = result
            prompt_values.update(_prompt_tensors(result, key))
            axes[key] = json.dumps(list(g.spec.axes) + ["batch"])
            frames.append(result.to_frame())
        steps.update()
    tables[schema.PATCHING] = pd.concat(frames, ignore_index=True)

    attr_frames, agreement = [], []
    for g in (g for g in grids if g.attribution):
        estimate = sweep_attribution(model, pairs, g.spec, metric)
        attr_frames.append(estimate.to_frame())
        key = schema.grid_key(g.site, g.by_pos, "denoise")
        if key in exact:
            agreement.append({"grid": key, **compare_with_exact(estimate, exact[key])})
    if attr_frames:
        tables[schema.ATTRIBUTION] = pd.concat(attr_frames, ignore_index=True)
        tables[schema.ATTRIBUTION_VS_EXACT] = pd.DataFrame(agreement)
    steps.update()

    ranked = _ranked(model, exact)
    if ranked is not None:
        tables[schema.RANKING] = ranked
    if config.paths:
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
    steps.update()

    if config.metric == "logit_diff":
        tables[schema.DLA] = compute_dla(model, pairs.clean, metric)
    steps.update()
    tables[schema.LOGIT_LENS] = compute_logit_lens(model, eval_data)
    tables[schema.OPERAND_ATTENTION] = compute_operand_attention(model, eval_data)
    steps.update()

    selected: list[Component] = []
    if ranked is not None and (ranked["kind"] == "head").any():
        heads = ranked[ranked["kind"] == "head"]
        selected = select_components(heads, top_k=min(config.top_k, len(heads)))
        n_random = min(config.n_random, max_random_sets(model, selected))
        tables[schema.KNOCKOUT] = compute_knockout(
            model, eval_data, selected, method=config.knockout, n_random=n_random,
            seed=config.seed)
    steps.update()
    tensors: dict[Artifact, dict[str, Tensor]] = {
        schema.PATCHING_VALUES: prompt_values,
        schema.PAIRS: {"clean_tokens": pairs.clean.tokens, "corrupt_tokens": pairs.corrupt.tokens,
                       "clean_a": pairs.clean.a, "clean_b": pairs.clean.b,
                       "corrupt_a": pairs.corrupt.a, "corrupt_b": pairs.corrupt.b},
    }
    if config.save_cache:
        names = act_names(model, ["z", "resid_post"])
        tensors[schema.ACTIVATION_CACHE] = run_cached(model, pairs.clean.tokens, names)
    steps.update()
    steps.close()

    with torch.inference_mode():
        device = device_of(model)
        clean = metric(model(pairs.clean.tokens.to(device))).mean().item()
        corrupted = metric(model(pairs.corrupt.tokens.to(device))).mean().item()
    summary = {"experiment": config.experiment, "task": task.name,
               "task_spec": schema.to_json(task), "change": pairs.change,
               "answer_digit": digit, "metric": metric.label, "metric_pos": metric.pos,
               "prompts": config.prompts, "n_requested": config.n_pairs, "n_pairs": len(pairs),
               "clean_accuracy": clean_acc, "corrupt_accuracy": corrupt_acc,
               "clean_metric": clean, "corrupted_metric": corrupted,
               "selected": [c.name for c in selected], "warnings": warnings,
               "position_labels": task.position_labels()}
    return Localization(tables, tensors, {schema.PATCHING_VALUES: axes}, summary)

