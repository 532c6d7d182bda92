"""Stage `finetune`: selective fine-tuning of localized components against random components,
full fine-tuning and no fine-tuning, into ``finetune/<name>/``.

Every arm starts from the run's model and trains on the same problems of the target task
with the same schedule and seeds: ``selected`` (the components a localization ranked
highest, or named ones), ``random`` (as many components of the same kinds, drawn outside
the selection: `n_random` distinct sets), ``full`` (every parameter) and ``none`` (no
training: the baseline). Each arm is scored before and after on the target task's held-out
problems and on the other tasks the model already did (forgetting).

Writes ``comparison.parquet`` (one row per arm, draw, seed and task), ``curves.parquet``
(training loss and the target's held-out exact match over steps), ``weights.safetensors``
(only the tensors each arm changed; the base is the run's ``model/``) and ``summary.json``.

`compare` is the comparison itself, over prompt sources (`sources.PromptSource`): this stage
runs it on tasks, the `llm_finetune` stage on an LLM's prompt suites.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

import pandas as pd
import torch

from arithinterp import schema
from arithinterp.analysis.localize import (
    draw_random_components,
    max_random_sets,
    select_components,
)
from arithinterp.analysis.sources import Problem, PromptSource, TaskSource, problems_of
from arithinterp.components import Component, parse_components
from arithinterp.fields import check_int, described
from arithinterp.finetune import Schedule, copy_model, finetune
from arithinterp.models import HookedModel, LoadedModel, facts
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model
from arithinterp.tasks import TaskSpec, sample_problems
from arithinterp.training.checkpoints import held_out_split

NAME = "finetune"
Arm = Literal["selected", "random", "full", "none"]
ARMS: tuple[str, ...] = ("selected", "random", "full", "none")


@dataclass(frozen=True)
class Selection:
    """Which components the `selected` arm trains: named ones, or the top of a
    localization's ranking (`top_k` or |effect| >= `threshold`, of the given kinds)."""

    components: tuple[str, ...] = described(
        (), "Components to fine-tune, by name: L1H3,L0.mlp (instead of an experiment).")
    experiment: str | None = described(
        None, "Select from this localization experiment of the run (e.g. a1, or an llm run's "
        "add1-few-shot-a0).")
    top_k: int | None = described(3, "The top K ranked components.")
    threshold: float | None = described(
        None, "Every component with |normalized effect| >= this (instead of the top K).")
    kinds: tuple[Literal["head", "mlp", "attn"], ...] = described(
        ("head",), "Kinds to select: head, mlp, attn.")

    def __post_init__(self) -> None:
        if self.components:
            parse_components(self.components)  # well-formed, no duplicates
            return
        if self.experiment is None:
            raise ValueError("select components by name or name a localization experiment")
        if (self.top_k is None) == (self.threshold is None):
            raise ValueError("give exactly one of top_k and threshold")


@dataclass(frozen=True)
class FinetuneConfig:
    """The target task (default: the model's own), the other tasks forgetting is measured
    on, the selection, the arms, and the shared budget: steps, problems, seeds."""

    name: str = described("ft", "The comparison's name: finetune/<name>.")
    task: TaskSpec | None = described(
        None, "Target task such as add3x3-plain (default: the model's own).")
    other_tasks: tuple[TaskSpec, ...] = described((), "Tasks forgetting is measured on.")
    select: Selection = field(default_factory=lambda: Selection(experiment="a1"))
    arms: tuple[Arm, ...] = described(ARMS, "Arms: selected, random, full, none.")
    n_random: int = described(3, "Random component sets (distinct).")
    seeds: tuple[int, ...] = described((0,), "Seeds.")
    schedule: Schedule = field(default_factory=Schedule)
    n_train: int = described(5_000, "Training problems.")
    n_eval: int = described(1_000, "Held-out problems scored.")
    eval_every: int = 50
    rescale: bool = described(
        False, "Multiply the selected heads' gradients by H/h (Zhang et al.).")

    def __post_init__(self) -> None:
        check_comparison(self.name, self.arms, self.n_random, self.seeds)
        check_int("n_train", self.n_train, min=10)
        check_int("n_eval", self.n_eval, min=10)


def check_comparison(name: str, arms: tuple[str, ...], n_random: int,
                     seeds: tuple[int, ...]) -> None:
    """Refuse a comparison's bad name, arms, random draws or seeds (naming the field)."""
    schema.finetune_key(name)  # validates the name
    if not arms or set(arms) - set(ARMS) or len(set(arms)) < len(arms):
        raise ValueError(f"arms must be distinct and among {ARMS}, got {arms}")
    if not seeds or len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    if n_random < 1 and "random" in arms:
        raise ValueError("the random arm needs n_random >= 1")


def check_random_sets(arms: tuple[str, ...], n_random: int, loaded: LoadedModel,
                      chosen: list[Component]) -> None:
    """Refuse more random sets than there are distinct ones of the selection's size."""
    if "random" in arms and (most := max_random_sets(loaded.model, chosen)) < n_random:
        raise ValueError(f"only {most} distinct random sets exist for "
                         f"{[c.name for c in chosen]}; lower n_random")


Config = FinetuneConfig


def key(config: FinetuneConfig) -> str:
    return schema.finetune_key(config.name)


def selected_components(sel: Selection, run: RunDir | None, loaded: LoadedModel
                        ) -> list[Component]:
    """The selection, checked against the model (and the run's localization, if used; a
    model outside a run can only have its components named)."""
    f = facts(loaded.model)
    if sel.components:
        return parse_components(sel.components, f)
    stage = schema.localize_key(sel.experiment)
    if run is None:
        raise ValueError(f"{loaded.source} is not a run, so it has no localization to select "
                         "from: name the components, or localize it first")
    if not run.has(schema.RANKING, stage):
        raise ValueError(f"run {run.dir} has no ranking of localization experiment "
                         f"{sel.experiment!r} to select from: run `arithinterp localize` on "
                         "it first (or name the components)")
    ranked = run.load(schema.RANKING, stage)
    ranked = ranked[ranked["kind"].isin(sel.kinds)]
    chosen = select_components(ranked, top_k=sel.top_k, threshold=sel.threshold)
    if not chosen:
        raise ValueError(f"no component of {sel.kinds} reaches |effect| >= {sel.threshold} in "
                         f"{sel.experiment}")
    return parse_components([c.name for c in chosen], f)


def check(config: FinetuneConfig, run: RunDir | None, loaded: LoadedModel
          ) -> list[Component]:
    """Refuse what cannot run before anything trains; returns the selection."""
    need_task(loaded, "fine-tuning")
    for task in (config.task, *config.other_tasks):
        if task is not None:
            loaded.with_task(task)  # same vocabulary, enough positions
    chosen = selected_components(config.select, run, loaded)
    check_random_sets(config.arms, config.n_random, loaded, chosen)
    return chosen


def arm_components(arms: tuple[str, ...], n_random: int, chosen: list[Component],
                   loaded: LoadedModel, seed: int) -> list[tuple[str, int, list | None]]:
    """(arm, draw, components: None for full, [] for none) of one seed; the `n_random`
    random draws are seeded by `seed`."""
    out = []
    for arm in arms:
        if arm == "selected":
            out.append((arm, 0, chosen))
        elif arm == "random":
            gen = torch.Generator().manual_seed(seed)
            for i, draw in enumerate(draw_random_components(loaded.model, chosen,
                                                            n_random, gen)):
                out.append((arm, i, draw))
        elif arm == "full":
            out.append((arm, 0, None))
        else:
            out.append((arm, 0, []))
    return out


@dataclass
class ArmRecords:
    """The training curves and changed tensors of a comparison's arms, as they are saved."""

    curves: list[pd.DataFrame] = field(default_factory=list)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    start: dict = field(default_factory=dict)  # the base model's curve values: step 0

    def add(self, arm: str, draw: int, seed: int, comps: list[Component] | None,
            curve: pd.DataFrame, changed: dict[str, torch.Tensor]) -> dict:
        """Keep one arm's curve (from step 0, the base model, when `start` is known) and
        changed tensors; returns its label columns."""
        label = {"arm": arm, "draw": draw, "seed": seed,
                 "components": "all" if comps is None else ",".join(c.name for c in comps)}
        if len(curve):
            if self.start:
                curve = pd.concat([pd.DataFrame([{"step": 0, **self.start}]), curve],
                                  ignore_index=True)
            self.curves.append(curve.assign(**label))
        self.weights.update({f"{arm}.{draw}.s{seed}/{k}": v for k, v in changed.items()})
        return label

    def save(self, run: RunDir, stage: str, base: str) -> None:
        """Write the curves and the changed tensors (`base`: where the unchanged ones are)."""
        columns = list(schema.FINETUNE_CURVES.columns)
        table = pd.concat(self.curves, ignore_index=True) if self.curves else pd.DataFrame(
            columns=columns)
        run.save(schema.FINETUNE_CURVES, stage, table.reindex(columns=columns))
        run.save(schema.FINETUNE_WEIGHTS, stage, self.weights,
                 metadata={"base": base, "keys": "<arm>.<draw>.s<seed>/<weight>: the tensors "
                                                 "that arm changed"})


@runtime_checkable
class Budget(Protocol):
    """What a comparison's config shares with the other kind's: the arms and the budget."""

    arms: tuple[str, ...]
    n_random: int
    seeds: tuple[int, ...]
    schedule: Schedule
    eval_every: int
    rescale: bool


@dataclass(frozen=True)
class Comparison:
    """What a comparison trains and scores, resolved before anything trains: the base model,
    the selection, the held-out problems of each prompt source (the target first: it gives
    the training data), the target's problems scored along the curves, each seed's training
    problems, and what else is measured of every arm (e.g. an LLM's perplexity on text)."""

    base: LoadedModel
    components: list[Component]
    scored: list[tuple[str, PromptSource, list[Problem]]]  # (role, source, held-out problems)
    probe: list[Problem]
    train: Callable[[int], list[Problem]]
    measure: Callable[[HookedModel], dict[str, float]] | None = None


@dataclass(frozen=True)
class Compared:
    """A comparison's table (one row per arm, draw, seed and prompt source; the measures
    before and after as ``<name>_before`` / ``<name>_after``), its curves and changed tensors,
    the base model's exact match per source and measures, the training problems of the last
    seed, and seconds: of a training step per arm (the probes left out), of evaluating one
    source and of one measure."""

    table: pd.DataFrame
    records: ArmRecords
    before: dict[str, float]
    measured: dict[str, float]
    n_train: int
    seconds: dict


def compare(c: Comparison, config: Budget, *, progress: bool = False) -> Compared:
    """Fine-tune every arm and seed of `config` from the base model; score before and after."""
    target = c.scored[0][1]

    def evaluate_all(model: HookedModel) -> dict:
        return {s.name: s.evaluate(model, problems, progress=progress)
                for _, s, problems in c.scored}

    def measure(model: HookedModel) -> dict[str, float]:
        return c.measure(model) if c.measure is not None else {}

    started = time.perf_counter()
    before = evaluate_all(c.base.model)
    eval_seconds = (time.perf_counter() - started) / len(c.scored)
    started = time.perf_counter()
    measured = measure(c.base.model)
    measure_seconds = time.perf_counter() - started
    records = ArmRecords(start={"exact_match": target.evaluate(c.base.model, c.probe)
                                .exact_match} if config.eval_every else {})
    rows, step_seconds, n_train = [], {}, 0
    for seed in config.seeds:
        data = target.training_data(c.train(seed))
        n_train = len(data)
        for arm, draw, comps in arm_components(config.arms, config.n_random, c.components,
                                               c.base, seed):
            model = copy_model(c.base.model) if comps != [] else c.base.model
            probing = [0.0]  # seconds the probes took

            def probe(step, model=model, probing=probing):
                started = time.perf_counter()
                exact = target.evaluate(model, c.probe).exact_match
                probing[0] += time.perf_counter() - started
                return {"exact_match": exact}

            if comps == []:  # the no-training baseline
                n_params, seconds, changed, curve = 0, 0.0, {}, pd.DataFrame()
                after, measured_after = before, measured
            else:
                result = finetune(model, data, replace(config.schedule, seed=seed),
                                  components=comps, rescale=config.rescale,
                                  every=config.eval_every, callback=probe, progress=progress)
                n_params, seconds, changed = result.n_params, result.seconds, result.changed
                curve = result.curve
                step_seconds.setdefault(arm, []).append(
                    (seconds - probing[0]) / config.schedule.max_steps)
                after, measured_after = evaluate_all(model), measure(model)
            label = records.add(arm, draw, seed, comps, curve, changed)
            for role, source, _ in c.scored:
                was, now = before[source.name], after[source.name]
                row = {**label, "n_params": n_params, "seconds": seconds, "task": source.name,
                       "role": role, "exact_before": was.exact_match,
                       "exact_after": now.exact_match,
                       "change": now.exact_match - was.exact_match}
                row.update({f"acc_c{k}": v for k, v in enumerate(now.digit_accuracy)})
                row.update({f"{k}_before": v for k, v in measured.items()})
                row.update({f"{k}_after": v for k, v in measured_after.items()})
                rows.append(row)
    return Compared(
        pd.DataFrame(rows), records, {k: e.exact_match for k, e in before.items()}, measured,
        n_train, {"train_step": {arm: sum(v) / len(v) for arm, v in step_seconds.items()},
                  "evaluate": eval_seconds, "measure": measure_seconds})


def mean_change(table: pd.DataFrame) -> dict[str, float]:
    """The mean change of exact match per arm and role: {'selected/target': ...}."""
    return {f"{arm}/{role}": float(g["change"].mean())
            for (arm, role), g in table.groupby(["arm", "role"])}


def run(config: FinetuneConfig, run: RunDir, ctx: Context) -> dict:
    """Fine-tune every arm and seed from the run's model; score before and after."""
    base = run_model(run, ctx)
    chosen = check(config, run, base)
    target = config.task or base.task
    tasks = [("target", target)] + [("other", t) for t in config.other_tasks]
    held = {t.name: problems_of(held_out_split(base.path, t, config.n_eval)) for _, t in tasks}
    held_out = set(held[target.name])

    def train(seed: int) -> list[Problem]:  # never the problems it is scored on
        a, b = sample_problems(target, config.n_train, torch.Generator().manual_seed(
            10_000 + seed), exclude=held_out)
        return list(zip(a.tolist(), b.tolist(), strict=True))

    done = compare(Comparison(base.with_task(target), chosen,
                              [(role, TaskSource(t), held[t.name]) for role, t in tasks],
                              probe=held[target.name][:200], train=train),
                   config, progress=ctx.progress)
    stage = key(config)
    run.save(schema.FINETUNE_COMPARISON, stage, done.table)
    done.records.save(run, stage, schema.WEIGHTS.at(schema.MODEL))
    summary = {"selected": [c.name for c in chosen], "target": target.name,
               "other_tasks": [t.name for t in config.other_tasks],
               "mean_change": mean_change(done.table)}
    run.save(schema.FINETUNE_SUMMARY, stage, summary)
    return summary
