"""`TrainConfig`: everything that determines a training run, validated on construction, and
`with_mode`, which turns a config into one of the training modes: ``sft`` (answer only),
``cot`` (full chain), ``icot`` (the chain removed by a curriculum) and ``aux`` (SFT + the
running-sum loss)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from arithinterp import schema
from arithinterp.fields import check_choice, check_float, check_int, described
from arithinterp.models import ModelSpec
from arithinterp.tasks import Task, TaskSpec
from arithinterp.tasks.data import SAMPLINGS, Sampling, problem_space_size
from arithinterp.training.plugins import Curriculum, ExtraLossConfig, ICoT, RunningSumLoss

MAX_DEFAULT_TRAIN = 50_000
Mode = Literal["sft", "cot", "icot", "aux"]
MODES: tuple[str, ...] = ("sft", "cot", "icot", "aux")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (with the seeds, so runs replay exactly)."""

    task: Task = field(default_factory=TaskSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    n_train: int | None = described(
        None, "Distinct training problems (default: as many as the task has, up to 50,000).")
    n_test: int = described(2_000, "Held-out problems (never trained).")
    sampling: Sampling = described(
        "uniform", "uniform or carries (balanced by number of carries).")
    batch_size: int = described(256, "Problems per step.")
    lr: float = described(1e-3, "Peak learning rate (AdamW).")
    weight_decay: float = 0.01
    decay: Literal["matrices", "all"] = "matrices"  # which parameters weight decay shrinks
    warmup_steps: int = 50
    max_steps: int = described(2_000, "Maximum optimizer steps.")
    eval_every: int = 50
    eval_size: int = 500  # test problems scored at intermediate evals; the final eval uses all
    target_accuracy: float | None = described(
        0.995, "Stop once held-out exact match reaches this.")
    checkpoint_every: int = 100
    grad_clip: float | None = 1.0
    seed: int = described(0, "Data seed: which problems are drawn and in what order (model.seed "
                          "seeds the weights).")
    curriculum: Curriculum | None = None
    extra_losses: tuple[ExtraLossConfig, ...] = ()
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's; Nanda et al. grok with (0.9, 0.98)
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # after the warmup
    snapshot_every: int | None = None  # save the weights every k steps (progress measures)
    flush_denormal: bool = False  # flush subnormal floats to 0 while training (speed)

    def __post_init__(self) -> None:
        for name in ("n_test", "batch_size", "max_steps", "eval_every", "eval_size",
                     "checkpoint_every"):
            check_int(name, getattr(self, name), min=1)
        check_int("n_train", self.n_train, min=1, optional=True)
        space = problem_space_size(self.task)
        if self.n_test >= space:
            raise ValueError(f"n_test ({self.n_test}) must be below the {space} problems of "
                             f"task {self.task.name}")
        if self.n_train is not None and self.n_train + self.n_test > space:
            raise ValueError(f"n_train ({self.n_train}) + n_test ({self.n_test}) exceed the "
                             f"{space} problems of task {self.task.name}; lower n_train (at "
                             f"most {space - self.n_test}) or leave it unset")
        check_int("warmup_steps", self.warmup_steps, min=0)
        if self.batch_size > self.train_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be <= n_train "
                             f"({self.train_size})")
        check_float("lr", self.lr, min=0, min_open=True)
        check_float("weight_decay", self.weight_decay, min=0)
        check_choice("decay", self.decay, ("matrices", "all"))
        check_float("target_accuracy", self.target_accuracy, min=0, max=1, min_open=True,
                    optional=True)
        check_float("grad_clip", self.grad_clip, min=0, min_open=True, optional=True)
        check_choice("sampling", self.sampling, SAMPLINGS)
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        check_choice("lr_schedule", self.lr_schedule, ("cosine", "constant"))
        check_int("snapshot_every", self.snapshot_every, min=1, optional=True)
        if self.curriculum is not None:
            self.curriculum.check(self)
        kinds = [e.kind for e in self.extra_losses]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"extra_losses has duplicate kinds: {kinds}")
        for extra in self.extra_losses:
            extra.check(self)

    @property
    def train_size(self) -> int:
        """n_train, or the default that fits the task."""
        if self.n_train is not None:
            return self.n_train
        return min(MAX_DEFAULT_TRAIN, problem_space_size(self.task) - self.n_test)

    @property
    def mode(self) -> Mode:
        """sft, cot, icot or aux, from the task format, curriculum and extra losses."""
        if isinstance(self.curriculum, ICoT):
            return "icot"
        if any(isinstance(e, RunningSumLoss) for e in self.extra_losses):
            return "aux"
        return "cot" if self.task.format == "cot" else "sft"

    def spec_at(self, step: int) -> Task:
        """The task spec of step `step`'s batches."""
        return self.curriculum.spec_at(step, self) if self.curriculum else self.task

    def eval_spec(self, step: int) -> Task:
        """The task spec evaluations at step `step` score."""
        return self.curriculum.eval_spec(step, self) if self.curriculum else self.task

    def to_dict(self) -> dict:
        return schema.to_json(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of to_dict; unknown keys and wrong types raise ValueError naming them."""
        return schema.from_json(cls, data, "training config")


def with_mode(config: TrainConfig, mode: Mode, *, aux_weight: float | None = None) -> TrainConfig:
    """The config trained in `mode`: sft keeps an answer-only format, cot and icot render
    the chain (icot with its curriculum), aux adds the running-sum loss (weight λ)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    task = config.task
    if mode in ("cot", "icot"):
        task = replace(task, format="cot", cot_tokens_removed=0)
    elif task.format == "cot":
        raise ValueError(f"mode {mode} trains on the answer only; task format 'cot' renders "
                         "the chain (use --format reversed or plain, or --mode cot / icot)")
    extra = tuple(e for e in config.extra_losses if not isinstance(e, RunningSumLoss))
    if mode == "aux":
        extra += (RunningSumLoss() if aux_weight is None else RunningSumLoss(weight=aux_weight),)
    elif aux_weight is not None:
        raise ValueError("aux_weight (λ) only applies to mode aux")
    curriculum = config.curriculum if isinstance(config.curriculum, ICoT) else None
    curriculum = (curriculum or ICoT()) if mode == "icot" else None
    return replace(config, task=task, curriculum=curriculum, extra_losses=extra)

