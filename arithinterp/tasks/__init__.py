"""Tasks: vocabulary, task specs and formats, metadata, sampling, minimal pairs."""

from arithinterp.tasks.corrupt import PromptPairs, Prompts, make_carry_pairs, make_digit_pairs
from arithinterp.tasks.data import Dataset, make_dataset, make_splits, sample_problems
from arithinterp.tasks.modular import ModularTask, Task
from arithinterp.tasks.prompts import PromptSuite, TokenPrompts
from arithinterp.tasks.spec import FORMATS, OPS, ProblemMeta, TaskSpec, compute_metadata

__all__ = [
    "FORMATS", "OPS", "Dataset", "ModularTask", "ProblemMeta", "PromptPairs", "PromptSuite",
    "Prompts", "Task", "TaskSpec", "TokenPrompts",
    "compute_metadata",
    "make_carry_pairs", "make_dataset", "make_digit_pairs", "make_splits", "sample_problems",
]
