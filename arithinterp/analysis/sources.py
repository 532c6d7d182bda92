"""Prompt sources: where a pipeline's prompts come from, a task or an LLM prompt suite.

The localization suite, the fine-tuning comparison and the evaluations ask a source the same
things whatever model they run on: prompts for a list of problems (``(a, b)`` pairs), whether
a model answers given prompts right (teacher-forced, from one forward pass), a greedy
evaluation of problems, training data (prompt and answer tokens, the loss on the answer) and
each head's attention to the operands. `TaskSource` answers for a task (a model trained
here); `llm.SuiteSource` for a `PromptSuite` asked of a pretrained LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd
import torch
from jaxtyping import Bool
from torch import Tensor

from arithinterp.analysis.attention import compute_operand_attention
from arithinterp.evaluate import EvalResult, evaluate, teacher_forced_correct
from arithinterp.models import HookedModel
from arithinterp.tasks import Dataset, Task, make_dataset

Problem = tuple[int, int]


@runtime_checkable
class Evaluation(Protocol):
    """Greedy answers to problems, scored: the exact match, per-digit accuracy where the
    answer is read digit by digit, and one row per problem."""

    @property
    def exact_match(self) -> float: ...

    @property
    def digit_accuracy(self) -> list[float]: ...

    examples: pd.DataFrame

    def summary(self) -> dict: ...


@runtime_checkable
class PromptSource(Protocol):
    """What pipelines ask of where their prompts come from."""

    @property
    def name(self) -> str: ...

    def make_prompts(self, problems: Sequence[Problem]):
        """The problems as prompts of one token length (a `Dataset` or `TokenPrompts`)."""

    def correct(self, model: HookedModel, prompts) -> Bool[Tensor, " batch"]:
        """Whether the model answers each prompt right, given the true prefix."""

    def evaluate(self, model: HookedModel, problems: Sequence[Problem], *,
                 progress: bool = False) -> Evaluation:
        """Greedy answers to the problems, scored exactly."""

    def training_data(self, problems: Sequence[Problem]):
        """Prompts followed by their answers, the loss on the answers (see `finetune`)."""

    def operand_attention(self, model: HookedModel, prompts) -> pd.DataFrame:
        """Each head's attention to the operands over the prompts."""


@dataclass(frozen=True)
class TaskSource:
    """A task as a prompt source: its problems in its format, scored token by token."""

    task: Task
    batch_size: int = 512  # prompts per forward pass of an evaluation

    @property
    def name(self) -> str:
        return self.task.name

    def make_prompts(self, problems: Sequence[Problem]) -> Dataset:
        a, b = (torch.tensor([p[i] for p in problems], dtype=torch.long) for i in (0, 1))
        return make_dataset(self.task, a, b)

    def correct(self, model: HookedModel, prompts: Dataset) -> Bool[Tensor, " batch"]:
        return teacher_forced_correct(model, prompts)

    def evaluate(self, model: HookedModel, problems: Sequence[Problem], *,
                 progress: bool = False) -> EvalResult:
        return evaluate(model, self.make_prompts(problems), batch_size=self.batch_size)

    def training_data(self, problems: Sequence[Problem]) -> Dataset:
        return self.make_prompts(problems)

    def operand_attention(self, model: HookedModel, prompts: Dataset) -> pd.DataFrame:
        return compute_operand_attention(model, prompts)


def problems_of(prompts) -> list[Problem]:
    """The (a, b) problems of a `Dataset` or `TokenPrompts`."""
    return list(zip(prompts.a.tolist(), prompts.b.tolist(), strict=True))
