"""The selective fine-tuning scenario (Zhang et al. 2024, on a CPU-sized model).

A model is trained on 3-digit addition with signed subtraction interleaved at one step in
`weights[1] / sum(weights)`, long enough that it adds perfectly and subtracts badly. Its
subtraction circuit is localized on the problems it already gets right (`only_correct`),
and the top heads are fine-tuned on subtraction alone, against as many random heads, all
parameters, and nothing, with the same problems, steps and seeds: the gain on subtraction
against the forgetting of addition. Why this scenario: both operations share the prompt
format and the vocabulary, so one model does both and a fine-tune on one can hurt the
other (the small-model analogue of arithmetic gain vs general ability); the weak operation
leaves room to gain; and the localized heads are those that carry the weak operation.

Everything is one run, ``<name>-base``: train, evaluate, localize (``localize/sub-a1``) and
finetune (``finetune/sub``) stages; a rerun reuses what is finished.
"""

from __future__ import annotations

from dataclasses import dataclass

from arithinterp import schema
from arithinterp.analysis.suite import LocalizeConfig
from arithinterp.disk import StrPath
from arithinterp.fields import check_float, check_int, described
from arithinterp.finetune import Schedule
from arithinterp.models import ModelSpec
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context
from arithinterp.stages.evaluate import EvaluateConfig
from arithinterp.stages.finetune import FinetuneConfig, Selection
from arithinterp.stages.job import ensure_job, run_on
from arithinterp.tasks import TaskSpec
from arithinterp.training.config import TrainConfig
from arithinterp.training.plugins import Mixture

ADD = TaskSpec(op="add", digits_a=3, digits_b=3, format="reversed")
SUB = TaskSpec(op="sub", digits_a=3, digits_b=3, format="reversed", signed=True)
LOCALIZATION = "sub-a1"  # localize/<this>: subtraction, answer digit 1
COMPARISON = "sub"  # finetune/<this>


@dataclass(frozen=True)
class FinetuneScenario:
    """The base model's training, and the comparison's budget."""

    name: str = described("mix", "Stem of the run's name: <name>-base.")
    base_steps: int = 1_000
    weights: tuple[int, int] = (3, 1)  # addition steps, subtraction steps, per cycle
    top_k: int = 2  # heads the selected arm trains (of 8)
    n_random: int = 3
    seeds: tuple[int, ...] = described((0, 1, 2), "Fine-tuning seeds.")
    steps: int = described(300, "Steps per fine-tune.")
    lr: float = 3e-4  # fine-tuning: a third of the pre-training rate
    quick: bool = False  # a tiny model and budget, for tests

    def __post_init__(self) -> None:
        schema.localize_key(self.name)  # a valid run-name stem
        for name in ("base_steps", "top_k", "n_random", "steps"):
            check_int(name, getattr(self, name), min=1, must="an integer >= 1")
        if not self.seeds or len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        check_float("lr", self.lr, min=0, min_open=True)

    @classmethod
    def smoke(cls, name: str = "mix") -> FinetuneScenario:
        """The quick scenario with its small budget: one seed, two random draws, 40 steps."""
        return cls(name=name, quick=True, base_steps=400, seeds=(0,), n_random=2, steps=40)

    def base_config(self) -> TrainConfig:
        """The mixture model: addition, with subtraction under-trained."""
        if self.quick:
            task_a, model = (TaskSpec(digits_a=2, digits_b=2),
                             ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64))
            return TrainConfig(task=task_a, model=model, n_train=1_000, n_test=200,
                               batch_size=64, max_steps=self.base_steps, eval_every=50,
                               eval_size=100, warmup_steps=5, lr=3e-3, target_accuracy=None,
                               curriculum=Mixture(tasks=(self.sub,), weights=self.weights))
        return TrainConfig(task=ADD, model=ModelSpec(n_layers=2, d_model=128, n_heads=4,
                                                     d_mlp=512), n_train=50_000, n_test=2_000,
                           batch_size=256, lr=1e-3, warmup_steps=50, max_steps=self.base_steps,
                           eval_every=200, eval_size=500, target_accuracy=None,
                           curriculum=Mixture(tasks=(SUB,), weights=self.weights))

    @property
    def add(self) -> TaskSpec:
        return TaskSpec(digits_a=2, digits_b=2) if self.quick else ADD

    @property
    def sub(self) -> TaskSpec:
        return TaskSpec(op="sub", digits_a=2, digits_b=2, signed=True) if self.quick else SUB

    def stages(self) -> list:
        """Evaluate, localize subtraction, fine-tune on it."""
        small = dict(n_pairs=64, n_eval=64, n_random=1) if self.quick else {}
        # the tiny quick model answers no subtraction yet: it localizes on every pair
        localize = LocalizeConfig(name=LOCALIZATION, task=self.sub, digit=1,
                                  only_correct=not self.quick,
                                  min_accuracy=0.0 if self.quick else 0.5, **small)
        finetune = FinetuneConfig(
            name=COMPARISON, task=self.sub, other_tasks=(self.add,),
            select=Selection(experiment=LOCALIZATION, top_k=self.top_k, kinds=("head",)),
            n_random=self.n_random, seeds=self.seeds,
            schedule=Schedule(max_steps=self.steps, lr=self.lr, batch_size=64 if self.quick
                              else 256),
            n_train=500 if self.quick else 20_000, n_eval=100 if self.quick else 1_000,
            eval_every=10 if self.quick else 50)
        return [EvaluateConfig(), localize, finetune]


def run_scenario(scenario: FinetuneScenario, runs_dir: StrPath, ctx: Context | None = None
                 ) -> RunDir:
    """Train the base model (reused when finished), then evaluate, localize and compare."""
    base = ensure_job(runs_dir, f"{scenario.name}-base", [scenario.base_config()], ctx=ctx)
    return run_on(base.dir, scenario.stages(), runs_dir=runs_dir, ctx=ctx).run
