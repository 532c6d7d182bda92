"""Stage `llm_finetune`: selective fine-tuning of a pretrained LLM's components on an
arithmetic prompt suite, against random components, full fine-tuning and none, into
``finetune/<name>/`` (the artifacts of the `finetune` stage, read by the same explorer page).

Every arm starts from the run's LLM and trains on the same problems of the target suite
(never its held-out evaluation problems) with the same schedule and seeds: ``selected`` (the
heads an llm localization of the run ranked highest, or named components), ``random`` (as
many components of the same kinds outside the selection, `n_random` distinct sets),
``full`` and ``none``. The training data is each prompt followed by its answer's tokens
(and end-of-sequence), the loss on the answer only (`llm.make_answer_data`). Each
arm is scored before and after by greedy exact match on held-out problems of the target
suite and of the other suites (forgetting of other arithmetic), and by the token-level
perplexity of a held-out English text (forgetting of language).

Writes ``comparison.parquet`` (one row per arm, draw, seed and suite, with the perplexity
before and after), ``curves.parquet`` (training loss, and the target's exact match on the
first `n_probe` held-out problems every `eval_every` steps), ``weights.safetensors`` (only
the tensors each arm changed; the base is the run's model source) and ``summary.json``
(with the seconds of one training step per arm, the probes left out, of one evaluation of
`n_eval` problems of one suite and of one perplexity pass). The comparison is the finetune
stage's (`finetune.compare`), over the suites as prompt sources (`llm.SuiteSource`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from arithinterp import schema
from arithinterp.components import Component
from arithinterp.evaluate import DEFAULT_TEXT, compute_perplexity, make_text_windows, read_text
from arithinterp.fields import check_int, described
from arithinterp.finetune import Schedule
from arithinterp.llm import SuiteSource, make_answer_data
from arithinterp.models import HookedModel, LoadedModel
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, run_model
from arithinterp.stages.finetune import (
    ARMS,
    Arm,
    Comparison,
    Selection,
    check_comparison,
    check_random_sets,
    compare,
    mean_change,
    selected_components,
)
from arithinterp.tasks import PromptSuite

NAME = "llm_finetune"
MAX_TRAIN = 2_000  # training problems when n_train is unset (fewer if the suite has fewer)


@dataclass(frozen=True)
class LLMFinetuneConfig:
    """The selection, the target suite (default: the suite of the llm localization the
    selection comes from, else add1-few-shot), the other suites and the text forgetting is
    measured on, the arms, and the shared budget: steps, problems, seeds."""

    select: Selection
    name: str = "ft"
    suite: PromptSuite | None = described(
        None, "The target prompt suite, e.g. add1-few-shot, mul2-chat (default: the suite of "
        "the experiment, else add1-few-shot).")
    other_suites: tuple[PromptSuite, ...] = described(
        (), "Suites forgetting of other arithmetic is measured on.")
    text: str = described(
        DEFAULT_TEXT, "A UTF-8 text file for the perplexity (default: CPython's pydoc topics).")
    window: int = described(128, "Tokens per perplexity window.")
    n_windows: int = described(32, "Perplexity windows, a seeded selection.")
    text_seed: int = 0  # draws the windows
    arms: tuple[Arm, ...] = ARMS
    n_random: int = 3
    seeds: tuple[int, ...] = (0,)
    schedule: Schedule = field(default_factory=lambda: Schedule(
        max_steps=100, lr=1e-4, warmup_steps=10, batch_size=16))
    n_train: int | None = None  # None: every problem outside the held-out ones, <= MAX_TRAIN
    n_eval: int = 50  # of add1's 97 problems, 47 are left to train on
    eval_seed: int = 0  # draws the held-out problems
    eval_every: int = 25  # 0: no exact match along the curve
    n_probe: int = 32  # held-out target problems scored along the curve
    batch_size: int = 16  # prompts per evaluation forward
    rescale: bool = False

    def __post_init__(self) -> None:
        check_comparison(self.name, self.arms, self.n_random, self.seeds)
        for name in ("window", "n_windows", "n_eval", "n_probe", "batch_size"):
            check_int(name, getattr(self, name), min=1)
        if self.window < 2:
            raise ValueError(f"window must be >= 2 tokens (one predicts the next), got "
                             f"{self.window}")
        check_int("n_train", self.n_train, min=1, optional=True)
        check_int("eval_every", self.eval_every, min=0)
        suites = [s for s in (self.suite, *self.other_suites) if s is not None]
        if len(set(suites)) < len(suites):
            raise ValueError("other_suites must differ from each other and from the suite")


Config = LLMFinetuneConfig


def key(config: LLMFinetuneConfig) -> str:
    return schema.finetune_key(config.name)


def target_suite(config: LLMFinetuneConfig, run: RunDir | None) -> PromptSuite:
    """The suite given, else the one the selection's llm localization asked, else the
    llm stage's default; an error when the selection's experiment is not an llm
    localization of the run."""
    experiment = config.select.experiment if not config.select.components else None
    if experiment is None:
        return config.suite or PromptSuite()
    stage = schema.localize_key(experiment)
    if run is None:
        raise ValueError(f"experiment {experiment!r} needs a run: the model is not one, so it "
                         "has no localization to select from (name the components)")
    if not run.stage_done(stage) or not run.has(schema.RANKING, stage):
        raise ValueError(f"run {run.dir} has no llm localization {experiment!r} to select from: "
                         "run `arithinterp llm run` on the model first (or name the components)")
    entry = run.load_json(f"{stage}/{schema.STAGE_CONFIG}")
    if entry.get("stage") != "llm":
        raise ValueError(f"{stage} of run {run.dir} is not an llm localization")
    return config.suite or schema.from_json(PromptSuite, entry["config"]["suite"], stage)


def training_problems(config: LLMFinetuneConfig, suite: PromptSuite, seed: int
                      ) -> list[tuple[int, int]]:
    """The training problems of one seed: none of them held out for evaluation (nor a
    few-shot example); an error when the suite has fewer than n_train (or than a batch)."""
    held_out = set(suite.problems(config.n_eval, config.eval_seed))
    want = config.n_train or MAX_TRAIN
    pool = suite.problems(want + len(held_out), 10_000 + seed)
    train = [p for p in pool if p not in held_out][:want]
    need = config.n_train or config.schedule.batch_size
    if len(train) < need:
        what = "n_train" if config.n_train else "batch_size"
        raise ValueError(f"{suite.name} has {len(train)} problems outside the {len(held_out)} "
                         f"held out, fewer than {what} ({need}): lower n_eval or {what}, or "
                         "take a suite with more digits")
    return train


@dataclass(frozen=True)
class Plan:
    """What `check` resolved: the selection, the target suite and the perplexity windows."""

    components: list[Component]
    suite: PromptSuite
    windows: torch.Tensor


def check(config: LLMFinetuneConfig, run: RunDir | None, loaded: LoadedModel) -> Plan:
    """Refuse what cannot run before anything trains or is written."""
    if loaded.task is not None:
        raise ValueError(f"llm fine-tuning needs a pretrained LLM; {loaded.source} is a model "
                         "trained on a task: use the finetune stage")
    suite = target_suite(config, run)
    if suite in config.other_suites:
        raise ValueError(f"other_suites repeat the target suite {suite.name}")
    chosen = selected_components(config.select, run, loaded)
    check_random_sets(config.arms, config.n_random, loaded, chosen)
    for seed in config.seeds:  # every answer must tokenize after its prompt (cheap)
        make_answer_data(loaded, suite, training_problems(config, suite, seed))
    if config.window > loaded.facts.n_ctx:
        raise ValueError(f"window ({config.window}) exceeds the model's context of "
                         f"{loaded.facts.n_ctx} tokens")
    windows = make_text_windows(loaded, read_text(config.text), window=config.window,
                                n=config.n_windows, seed=config.text_seed)
    return Plan(chosen, suite, windows)


def run(config: LLMFinetuneConfig, run: RunDir, ctx: Context) -> dict:
    """Fine-tune every arm and seed from the run's LLM; score before and after."""
    base = run_model(run, ctx)
    plan = check(config, run, base)
    suites = [("target", plan.suite)] + [("other", s) for s in config.other_suites]

    def perplexity(model: HookedModel) -> dict[str, float]:
        return {"ppl": compute_perplexity(model, plan.windows, batch_size=config.batch_size)}

    done = compare(Comparison(
        base, plan.components,
        [(role, SuiteSource(base, s, batch_size=config.batch_size),
          s.problems(config.n_eval, config.eval_seed)) for role, s in suites],
        probe=plan.suite.problems(min(config.n_probe, config.n_eval), config.eval_seed),
        train=lambda seed: training_problems(config, plan.suite, seed), measure=perplexity),
        config, progress=ctx.progress)
    stage = key(config)
    table = done.table
    run.save(schema.FINETUNE_COMPARISON, stage, table)
    done.records.save(run, stage, base.source)
    target = table[table["role"] == "target"]
    summary = {
        "model": base.source, "selected": [c.name for c in plan.components],
        "experiment": None if config.select.components else config.select.experiment,
        "target": plan.suite.name, "other_tasks": [s.name for s in config.other_suites],
        "exact_before": done.before, "perplexity_before": done.measured["ppl"],
        "text": config.text, "window": config.window, "n_windows": config.n_windows,
        "n_train": done.n_train, "n_eval": config.n_eval, "mean_change": mean_change(table),
        "mean_perplexity_change": {arm: float((g["ppl_after"] - g["ppl_before"]).mean())
                                   for arm, g in target.groupby("arm")},
        "seconds": {"train_step": done.seconds["train_step"],
                    "evaluate": done.seconds["evaluate"],
                    "perplexity": done.seconds["measure"]}}
    run.save(schema.FINETUNE_SUMMARY, stage, summary)
    return {"selected": summary["selected"], "target": plan.suite.name,
            "mean_change": summary["mean_change"]}
