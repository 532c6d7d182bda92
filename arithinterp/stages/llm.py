"""Stage `llm`: arithmetic in the run's pretrained LLM (`arithinterp.llm`) into
``localize/<experiment>/``: greedy evaluation on a prompt suite (every answer in
``llm_examples.parquet``), minimal pairs from the correctly answered problems (or, with
keep 'all', from every evaluated one), the Fourier picture of the digits (Zhou et al. 2024:
``llm_fourier.parquet``, skipped with a warning when the answers do not start with all ten
digits), and the localization suite's tables (`llm.localize_llm`), written as a task
localization's are (so the explorer's pages read them), with the evaluation in the summary."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from arithinterp import schema
from arithinterp.core.cache import batch_size_for
from arithinterp.fields import check_choice, check_int, described
from arithinterp.fourier import llm_fourier
from arithinterp.llm import (
    CHANGES,
    LLMLocalizeConfig,
    SuiteSource,
    group_by_length,
    localize_llm,
    make_llm_pairs,
    prompt_text,
)
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, run_model
from arithinterp.stages.localize import save_localization
from arithinterp.tasks import PromptSuite

NAME = "llm"


@dataclass(frozen=True)
class LLMConfig:
    """Which questions, how many, which minimal pairs, how much localization."""

    suite: PromptSuite = field(default_factory=PromptSuite)
    n_eval: int = described(100, "Problems to evaluate.")
    change: Literal["a", "b", "op"] = described(
        "a", "What a minimal pair changes: a digit of a, of b, or the operator.")
    digit: int = described(0, "Which digit of that operand (0 = least significant).")
    n_pairs: int = described(32, "Minimal pairs (from the correct answers).")
    keep: Literal["correct", "all"] = "correct"  # the problems the pairs are made from
    localize: LLMLocalizeConfig = field(default_factory=LLMLocalizeConfig)
    batch_size: int | None = described(
        None, "Prompts per forward pass (default: as many as fit in a quarter of the free "
        "memory, at most 64).")
    seed: int = described(0, "Draws the problems and the pairs.")
    name: str | None = None  # the experiment (default: suite, change and digit)

    def __post_init__(self) -> None:
        check_int("n_eval", self.n_eval, min=1)
        check_int("n_pairs", self.n_pairs, min=1)
        check_int("batch_size", self.batch_size, min=1, optional=True)
        check_choice("keep", self.keep, ("correct", "all"))
        check_choice("change", self.change, CHANGES)
        if self.change != "op" and not 0 <= self.digit < self.suite.digits:
            raise ValueError(f"digit must be in 0..{self.suite.digits - 1} for "
                             f"{self.suite.name}, got {self.digit!r}")
        schema.localize_key(self.experiment)  # a bad name fails here

    @property
    def experiment(self) -> str:
        change = "op" if self.change == "op" else f"{self.change}{self.digit}"
        return self.name or f"{self.suite.name}-{change}"


Config = LLMConfig


def key(config: LLMConfig) -> str:
    return schema.localize_key(config.experiment)


def run(config: LLMConfig, run: RunDir, ctx: Context) -> dict:
    """Evaluate, keep the correct answers, pair them, localize; write every table."""
    loaded = run_model(run, ctx)
    if loaded.task is not None:
        raise ValueError(f"the llm stage analyses a pretrained LLM; {loaded.source} is a model "
                         "trained on a task: use the localize stage")
    batch_size = config.batch_size or batch_size_for(loaded.model, max(
        len(loaded.tokenizer.encode(prompt_text(loaded, config.suite, a, b)))
        for a, b in config.suite.problems(config.n_eval, config.seed)) + 8)
    source = SuiteSource(loaded, config.suite, batch_size=batch_size)
    result = source.evaluate(loaded.model, config.suite.problems(config.n_eval, config.seed),
                             progress=ctx.progress)
    correct = result.correct_problems()
    kept = correct if config.keep == "correct" else result.problems()
    if not kept:
        raise ValueError(f"{loaded.source} answers none of {config.n_eval} {config.suite.name} "
                         "problems: nothing to localize (try another suite, or keep all)")
    pairs = make_llm_pairs(loaded, config.suite, kept, change=config.change,
                           digit=config.digit, n=config.n_pairs, seed=config.seed)
    out = localize_llm(source, pairs, config.localize, batch_size=batch_size,
                       progress=ctx.progress)
    stage = key(config)
    warnings = list(out.summary["warnings"])
    try:  # the evaluated problems of the most common prompt length
        prompts = max(group_by_length(loaded, config.suite, result.problems()), key=len)
        run.save(schema.LLM_FOURIER, stage, llm_fourier(loaded, prompts,
                                                        batch_size=batch_size))
    except ValueError as e:
        warnings.append(f"no Fourier table: {e}")
    run.save(schema.LLM_EXAMPLES, stage, result.examples)
    summary = {**out.summary, "warnings": warnings, "experiment": config.experiment,
               "model": loaded.source,
               "suite": config.suite.name, "evaluation": result.summary(),
               "n_pairs_asked": config.n_pairs, "batch_size": batch_size,
               "kept": f"{len(correct)} of {len(result.examples)} problems answered "
                       f"correctly; {len(pairs)} pairs from "
                       f"{'them' if config.keep == 'correct' else 'all of them'}"}
    save_localization(run, stage, replace(out, summary=summary))
    return {"exact_match": result.exact_match, "n_correct": len(correct),
            "n_pairs": len(pairs), "top_heads": summary["top_heads"]}
