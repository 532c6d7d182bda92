"""The shipped jobs that ``arithinterp demo`` and ``arithinterp llm`` run: the zoo adder
evaluated, localized, probed and (the shipped one) fine-tuned; a pretrained LLM localized.
Each is a list of stage configs for `stages.job.run_job`."""

from __future__ import annotations

from typing import Any

from arithinterp.analysis.suite import LocalizeConfig
from arithinterp.finetune import Schedule
from arithinterp.probes.sweep import ProbeConfig
from arithinterp.stages.evaluate import EvaluateConfig
from arithinterp.stages.finetune import FinetuneConfig, Selection
from arithinterp.stages.fourier import FourierConfig
from arithinterp.stages.llm import LLMConfig
from arithinterp.stages.model import ModelSource
from arithinterp.stages.probes import ProbesConfig
from arithinterp.tasks import TaskSpec

DEFAULT_MODEL = "add3-reversed"
DEFAULT_LLM = "llm:smollm2"


def demo_finetune() -> FinetuneConfig:
    """The demo's short fine-tuning comparison: teach the adder signed subtraction through
    its localized heads (experiment a1), against random heads, everything and nothing,
    measuring what it keeps of addition."""
    add = TaskSpec(op="add", digits_a=3, digits_b=3, format="reversed")
    sub = TaskSpec(op="sub", digits_a=3, digits_b=3, format="reversed", signed=True)
    return FinetuneConfig(name="sub", task=sub, other_tasks=(add,),
                          select=Selection(experiment="a1", top_k=3), n_random=2, seeds=(0,),
                          schedule=Schedule(max_steps=100, lr=3e-4), n_train=5_000,
                          n_eval=500)


def demo_localize() -> tuple[LocalizeConfig, ...]:
    """The shipped adder's two demo experiments: corrupt digit a1 (read at c1), and flip the
    carry into c2 (read at c2), so the explorer has two to switch between."""
    return LocalizeConfig(), LocalizeConfig(corrupt="carry", position=2)


def llm_job(source: str = DEFAULT_LLM, config: LLMConfig | None = None) -> list[Any]:
    """A pretrained LLM (its source recorded, not copied) and one llm stage on it."""
    return [ModelSource(source), config or LLMConfig()]


def demo_job(model: str = DEFAULT_MODEL, *, n_eval: int | None = None,
             localize: tuple[LocalizeConfig, ...] = (LocalizeConfig(),),
             n_probe: int | None = 2_000, seed: int = 0,
             finetune: FinetuneConfig | None = None) -> list[Any]:
    """The main job: the model, its held-out accuracy, localization experiments, digit and
    carry probes, the Fourier report (n_probe=None skips the last two) and, if given, a
    fine-tuning comparison."""
    stages: list[Any] = [ModelSource(model), EvaluateConfig(n_eval), *localize]
    if n_probe is not None:
        stages += [ProbesConfig(n=n_probe, fit=ProbeConfig(seed=seed)),
                   FourierConfig(n=n_probe, seed=seed)]
    if finetune is not None:
        stages.append(finetune)
    return stages
