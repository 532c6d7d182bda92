"""Training loop: answer-token loss, warmup + cosine AdamW, evals, checkpoints, exact resume.

The loop is a plain function of (TrainConfig, output directory). What varies between
training modes is named in the config through registries, so a saved config replays it
and a sweep can vary it:

- ``curriculum`` (`Curriculum`): which task spec renders the batches of each step, e.g.
  ``icot``, the implicit chain-of-thought schedule of Deng et al. (2024): the chain's first
  tokens are removed a few at a time, the optimizer reset at each removal;
- ``extra_losses`` (`ExtraLossConfig`): terms read off hooked activations and added to the
  loss, with parameters of their own that are trained and saved with the model, e.g.
  ``running_sum``, Bai et al.'s (2025) linear head regressing the running sums.

`TrainConfig.mode` names the combination: ``sft`` (answer only), ``cot`` (full chain),
``icot`` and ``aux`` (SFT + the running-sum loss).

Output directory (a checkpoint folder, e.g. a run's ``model/``): ``config.json`` +
``model.safetensors`` (the final model and the task spec its last step trained on),
``train_config.json``, ``metrics.jsonl`` (one line per eval), ``metrics.json`` (final
held-out evaluation) and ``extra.safetensors`` (trained extra-loss parameters). While
training runs, ``checkpoint/`` holds model, optimizer (``torch.load(weights_only=True)``),
generator state and data position; training N steps straight equals N/2 steps, a resume,
and N/2 more, bitwise, on the CPU.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.components import hook_name
from arithinterp.evaluate import answer_digit_loss, evaluate
from arithinterp.models import (
    HookedModel,
    ModelSpec,
    build_model,
    close_position_gap,
    context_length,
    load_model,
    move_to,
    position_embedding,
    read_weights,
    resolve_device,
    save_model,
    state_tensors,
)
from arithinterp.runs import atomic_write_bytes, atomic_write_text, safetensors_bytes
from arithinterp.tasks import Dataset, ModularTask, Task, TaskSpec, make_dataset, make_splits
from arithinterp.tasks.data import (
    SAMPLINGS,
    Sampling,
    fraction_split,
    make_test_split,
    problem_space_size,
    with_chain_removed,
)

MAX_DEFAULT_TRAIN = 50_000
Mode = Literal["sft", "cot", "icot", "aux"]
MODES: tuple[str, ...] = ("sft", "cot", "icot", "aux")


# ---- registries ----------------------------------------------------------------------------
class Curriculum(schema.Registered):
    """A schedule of task specs over steps (a registered family, stored with its kind)."""

    def check(self, config: TrainConfig) -> None:
        """Refuse (ValueError) a config this curriculum cannot train."""

    def spec_at(self, step: int, config: TrainConfig) -> Task:
        """The task spec whose rendering trains step `step`."""
        raise NotImplementedError

    def resets_optimizer(self, step: int, config: TrainConfig) -> bool:
        """Whether the optimizer starts afresh before step `step`."""
        return False

    def eval_spec(self, step: int, config: TrainConfig) -> Task:
        """The task spec evaluations at `step` score (default: the one being trained)."""
        return self.spec_at(step, config)

    def position_gap(self, spec: Task) -> int:
        """Positions skipped after the prompt when `spec` is trained (0: plain positions)."""
        return 0


@Curriculum.register
@dataclass(frozen=True)
class Mixture(Curriculum):
    """Interleaved tasks, one per step, in a fixed cycle: `weights[0]` steps of the config's
    task, then `weights[i + 1]` steps of `tasks[i]`, and again. The other tasks render the
    same problems (the same operand ranges; a subtraction among them must be signed, so every
    problem is valid) with the same vocabulary. Evaluations score the config's own task."""

    kind: ClassVar[str] = "mix"
    tasks: tuple[Task, ...] = ()
    weights: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.tasks or len(self.weights) != len(self.tasks) + 1:
            raise ValueError("a mixture needs other tasks and one weight more than tasks (the "
                             f"config's own task first), got {len(self.tasks)} tasks and "
                             f"{len(self.weights)} weights")
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.weights):
            raise ValueError(f"weights must be positive integers, got {self.weights}")

    def check(self, config: TrainConfig) -> None:
        own = config.task
        for t in self.tasks:
            if (t.operand_range("a"), t.operand_range("b")) != \
                    (own.operand_range("a"), own.operand_range("b")):
                raise ValueError(f"mixture task {t.name} draws other operands than {own.name}")
            if t.op == "sub" and not t.signed and own != t:
                raise ValueError(f"mixture task {t.name}: an unsigned subtraction cannot "
                                 f"render every problem of {own.name}; use signed=True")
            if t.vocab != own.vocab or context_length(t) > context_length(own):
                raise ValueError(f"mixture task {t.name} needs another vocabulary or more "
                                 f"positions than {own.name}")

    def spec_at(self, step: int, config: TrainConfig) -> Task:
        slot = step % sum(self.weights)
        for spec, weight in zip((config.task, *self.tasks), self.weights, strict=True):
            if slot < weight:
                return spec
            slot -= weight
        raise AssertionError("unreachable: slot is below the sum of the weights")

    def eval_spec(self, step: int, config: TrainConfig) -> Task:
        return config.task


@Curriculum.register
@dataclass(frozen=True)
class ICoT(Curriculum):
    """Implicit chain of thought (Deng et al. 2024): train on the full chain for
    `full_chain_steps` steps (None: one stage), then remove `tokens_per_stage` chain tokens
    from its front every `stage_steps` steps (None: one epoch of the training set) until
    none are left.

    `smoothing` > 0 removes extra tokens with probability proportional to exp(-smoothing · o)
    for o = 0..`max_extra`, drawn per step (one draw for the whole batch, so batches stack),
    once removal has begun; evaluations score the scheduled spec, unsmoothed.
    `reset_optimizer` clears AdamW's state whenever the number of removed tokens grows.

    `keep_positions`: the tokens after the removed ones keep their full-chain position ids
    (the removed tokens leave a gap), so a model with learned positions only has to learn
    what the removed tokens computed, not every later position anew; at the end of training
    the gap is folded into the position embedding (`models.close_position_gap`) and the
    saved model runs on plain positions. Without it, a 2-layer d_model-128 model trained to
    100% on the full 3x3 chain fell to under 3% exact match for 150+ steps after each
    removal of 2 tokens.
    """

    kind: ClassVar[str] = "icot"
    tokens_per_stage: int = 8
    stage_steps: int | None = None
    full_chain_steps: int | None = None
    smoothing: float = 0.0
    max_extra: int = 4
    reset_optimizer: bool = True
    keep_positions: bool = False

    def __post_init__(self) -> None:
        if self.tokens_per_stage < 1:
            raise ValueError(f"tokens_per_stage must be >= 1, got {self.tokens_per_stage}")
        if self.stage_steps is not None and self.stage_steps < 1:
            raise ValueError(f"stage_steps must be None or >= 1, got {self.stage_steps}")
        if self.full_chain_steps is not None and self.full_chain_steps < 0:
            raise ValueError(f"full_chain_steps must be None or >= 0, got "
                             f"{self.full_chain_steps}")
        if self.smoothing < 0 or self.max_extra < 0:
            raise ValueError("smoothing and max_extra must be >= 0, got "
                             f"{self.smoothing} and {self.max_extra}")

    def check(self, config: TrainConfig) -> None:
        if config.task.format != "cot" or config.task.cot_tokens_removed:
            raise ValueError("curriculum icot trains format 'cot' from the full chain "
                             f"(cot_tokens_removed=0), got task {config.task.name} with "
                             f"cot_tokens_removed={config.task.cot_tokens_removed}")
        if self.keep_positions and config.model.positional != "standard":
            raise ValueError("keep_positions needs learned positions (positional='standard')")

    def position_gap(self, spec: Task) -> int:
        return spec.cot_tokens_removed if self.keep_positions else 0

    def chain_length(self, config: TrainConfig) -> int:
        return config.task.max_cot_tokens

    def _steps(self, config: TrainConfig) -> int:
        return self.stage_steps or max(1, config.train_size // config.batch_size)

    def removed_at(self, step: int, config: TrainConfig) -> int:
        """Chain tokens scheduled for removal at `step` (without smoothing)."""
        per_stage = self._steps(config)
        first = per_stage if self.full_chain_steps is None else self.full_chain_steps
        if step < first:
            return 0
        stage = 1 + (step - first) // per_stage
        return min(self.chain_length(config), stage * self.tokens_per_stage)

    def spec_at(self, step: int, config: TrainConfig) -> Task:
        removed = self.removed_at(step, config)
        if self.smoothing > 0 and 0 < removed < self.chain_length(config):
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step + 7)
            extra = torch.arange(self.max_extra + 1, dtype=torch.float64)
            o = int(torch.multinomial(torch.exp(-self.smoothing * extra), 1, generator=gen))
            removed = min(self.chain_length(config), removed + o)
        return replace(config.task, cot_tokens_removed=removed)

    def eval_spec(self, step: int, config: TrainConfig) -> Task:
        return replace(config.task, cot_tokens_removed=self.removed_at(step, config))

    def resets_optimizer(self, step: int, config: TrainConfig) -> bool:
        return (self.reset_optimizer and step > 0
                and self.removed_at(step, config) != self.removed_at(step - 1, config))


class ExtraLossConfig(schema.Registered):
    """An extra loss term (a registered family); `build` makes its trainable module."""

    weight: float

    def check(self, config: TrainConfig) -> None:
        """Refuse (ValueError) a config this loss cannot train."""

    def build(self, config: TrainConfig) -> ExtraLoss:
        raise NotImplementedError


class ExtraLoss(torch.nn.Module):
    """An extra loss term read off hooked activations; subclasses set `hook_names`.

    ``forward(acts, batch, logits, gen)`` gets the activations of ``hook_names`` (with
    gradients) and the loop's seeded generator (checkpointed, so a resumed run draws the same
    numbers) and returns a scalar; its parameters are trained and saved too.
    """

    hook_names: tuple[str, ...] = ()
    weight: float = 1.0


@ExtraLossConfig.register
@dataclass(frozen=True)
class RunningSumLoss(ExtraLossConfig):
    """Bai et al.'s auxiliary loss: a linear head per answer digit k regresses the
    standardized running sum c_k from `site` at `layer`, read at the position that predicts
    digit k; MSE, times `weight` (λ), added to the LM loss. `heads` (for site 'z') picks the
    heads whose outputs the head reads (None: all)."""

    kind: ClassVar[str] = "running_sum"
    weight: float = 1.0
    site: Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "z"] = "resid_mid"
    layer: int | None = None  # None: the last layer
    heads: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"weight (λ) must be >= 0, got {self.weight}")
        if self.layer is not None and self.layer < 0:
            raise ValueError(f"layer must be None or >= 0, got {self.layer}")
        if self.heads is not None and self.site != "z":
            raise ValueError("heads only applies to site 'z'")

    def check(self, config: TrainConfig) -> None:
        if not isinstance(config.task, TaskSpec) or config.task.op != "mul":
            raise ValueError(f"the running_sum loss needs running sums, which only "
                             f"multiplication has; task {config.task.name} has none")
        if self.layer is not None and self.layer >= config.model.n_layers:
            raise ValueError(f"running_sum layer must be in 0..{config.model.n_layers - 1}, "
                             f"got {self.layer}")
        bad = [h for h in self.heads or () if not 0 <= h < config.model.n_heads]
        if bad:
            raise ValueError(f"running_sum heads must be in 0..{config.model.n_heads - 1}, "
                             f"got {bad}")

    def build(self, config: TrainConfig) -> ExtraLoss:
        return RunningSumHead(self, config)


class RunningSumHead(ExtraLoss):
    """The module of `RunningSumLoss` (statistics of c_k from the training task)."""

    def __init__(self, cfg: RunningSumLoss, config: TrainConfig) -> None:
        super().__init__()
        task = config.task
        self.cfg, self.weight = cfg, cfg.weight
        layer = config.model.n_layers - 1 if cfg.layer is None else cfg.layer
        self.hook_names = (hook_name(cfg.site, layer),)
        n_heads = config.model.n_heads
        heads = list(cfg.heads) if cfg.heads is not None else list(range(n_heads))
        width = config.model.head_dim * len(heads) if cfg.site == "z" else config.model.d_model
        self.heads = heads
        self.register_buffer("head_index", torch.tensor(heads))
        self.probe = torch.nn.Linear(width, task.answer_width)
        # c_k's mean and spread over the task (a fixed sample: the same every run)
        sample = make_test_split(replace(task, format="reversed", cot_tokens_removed=0),
                                 min(2_000, problem_space_size(task)), seed=0)
        sums = sample.column_sums.double()
        self.register_buffer("mean", sums.mean(0).float())
        self.register_buffer("std", sums.std(0).clamp(min=1.0).float())

    def forward(self, acts: dict[str, Tensor], batch: Dataset, logits: Tensor,
                gen: torch.Generator) -> Tensor:
        act = acts[self.hook_names[0]]
        pos = torch.tensor([p - 1 for p in batch.spec.answer_positions()], device=act.device)
        x = act[:, pos]  # [batch digit d] (or [batch digit head d_head] for z)
        if self.cfg.site == "z":
            x = x[:, :, self.head_index].flatten(-2)
        pred = self.probe(x).diagonal(dim1=-2, dim2=-1)  # digit k's own output: [batch digit]
        target = (batch.column_sums.to(act.device).float() - self.mean) / self.std
        return F.mse_loss(pred, target)


# ---- the config ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (with the seeds, so runs replay exactly)."""

    task: Task = field(default_factory=TaskSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    n_train: int | None = None  # None: as many as the task has, up to 50,000
    n_test: int = 2_000
    sampling: Sampling = "uniform"
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    decay: Literal["matrices", "all"] = "matrices"  # which parameters weight decay shrinks
    warmup_steps: int = 50
    max_steps: int = 2_000
    eval_every: int = 50
    eval_size: int = 500  # test problems scored at intermediate evals; the final eval uses all
    target_accuracy: float | None = 0.995  # stop once held-out exact match reaches this
    checkpoint_every: int = 100
    grad_clip: float | None = 1.0
    seed: int = 0  # data sampling and order; the model's init seed is model.seed
    curriculum: Curriculum | None = None
    extra_losses: tuple[ExtraLossConfig, ...] = ()
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's; Nanda et al. grok with (0.9, 0.98)
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # after the warmup
    snapshot_every: int | None = None  # save the weights every k steps (progress measures)
    flush_denormal: bool = False  # flush subnormal floats to 0 while training (speed)

    def __post_init__(self) -> None:
        for name in ("n_test", "batch_size", "max_steps", "eval_every", "eval_size",
                     "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.n_train is not None and (isinstance(self.n_train, bool) or
                                         not isinstance(self.n_train, int) or self.n_train < 1):
            raise ValueError(f"n_train must be None or a positive integer, got {self.n_train!r}")
        space = problem_space_size(self.task)
        if self.n_test >= space:
            raise ValueError(f"n_test ({self.n_test}) must be below the {space} problems of "
                             f"task {self.task.name}")
        if self.n_train is not None and self.n_train + self.n_test > space:
            raise ValueError(f"n_train ({self.n_train}) + n_test ({self.n_test}) exceed the "
                             f"{space} problems of task {self.task.name}; lower n_train (at "
                             f"most {space - self.n_test}) or leave it unset")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.batch_size > self.train_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be <= n_train "
                             f"({self.train_size})")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.decay not in ("matrices", "all"):
            raise ValueError(f"decay must be 'matrices' or 'all', got {self.decay!r}")
        if self.target_accuracy is not None and not 0 < self.target_accuracy <= 1:
            raise ValueError("target_accuracy must be in (0, 1] or None, "
                             f"got {self.target_accuracy}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {self.betas}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got "
                             f"{self.lr_schedule!r}")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be None or >= 1, got {self.snapshot_every}")
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

    def position_hooks(self, model: HookedModel, spec: Task) -> list:
        """Hooks that give `spec`'s batches the curriculum's position ids (none: plain)."""
        gap = self.curriculum.position_gap(spec) if self.curriculum else 0
        if not gap:
            return []
        return [(hook_name("pos_embed"), partial(_gapped_positions, weight=position_embedding(
            model), start=spec.prompt_len, gap=gap))]

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


@dataclass(frozen=True)
class TrainResult:
    """Where the model went, how far it got and how well it does on held-out problems."""

    path: Path
    steps: int
    stopped_early: bool
    final: dict  # EvalResult.summary() on the full test split
    seconds: float


ZOO_RECIPES: dict[str, TrainConfig] = {
    f"add3-{fmt}": TrainConfig(
        task=TaskSpec(op="add", digits_a=3, digits_b=3, format=fmt),
        model=ModelSpec(n_layers=2, d_model=128, n_heads=4, d_mlp=512, seed=0),
        n_train=50_000, n_test=2_000, batch_size=256, lr=1e-3, warmup_steps=50, decay="all",
        max_steps=3_000, eval_every=50, eval_size=1_000, target_accuracy=0.999, seed=0,
    )
    for fmt in ("reversed", "plain")
}


def grokking_config(task: ModularTask, *, train_fraction: float = 0.3, max_steps: int = 25_000,
                    seed: int = 0, snapshot_every: int | None = 250) -> TrainConfig:
    """Nanda et al. 2023's grokking setup for a modular task: one layer (d_model 128, 4 heads,
    ReLU MLP 512, no norm), full-batch AdamW (lr 1e-3, weight decay 1 on everything, betas
    0.9/0.98, constant after 10 warmup steps) on `train_fraction` of the p² pairs, the rest
    held out and scored in full every 100 steps; weights snapshotted for progress measures."""
    n_train, n_test = fraction_split(task, train_fraction)
    return TrainConfig(
        task=task,
        model=ModelSpec(n_layers=1, d_model=128, n_heads=4, d_head=32, d_mlp=512,
                        act_fn="relu", normalization=None, seed=seed),
        n_train=n_train, n_test=n_test, batch_size=n_train, lr=1e-3, weight_decay=1.0,
        decay="all", betas=(0.9, 0.98), lr_schedule="constant", warmup_steps=10,
        max_steps=max_steps, eval_every=100, eval_size=n_test, target_accuracy=None,
        checkpoint_every=1_000, snapshot_every=snapshot_every, flush_denormal=True, seed=seed)


ZOO_RECIPES["modadd-113"] = grokking_config(ModularTask(p=113, op="add"), max_steps=20_000)


def zoo_recipe(name: str) -> TrainConfig:
    """The training config a shipped zoo model is (re)built with."""
    if name not in ZOO_RECIPES:
        raise ValueError(f"no recipe for {name!r}; recipes: {', '.join(sorted(ZOO_RECIPES))}")
    return ZOO_RECIPES[name]


@runtime_checkable
class Schedule(Protocol):
    """What the learning-rate schedule reads (a TrainConfig, a fine-tuning config)."""

    lr: float
    warmup_steps: int
    max_steps: int


def lr_at(step: int, config: Schedule) -> float:
    """Linear warmup to config.lr, then cosine decay to 10% of it at max_steps (or constant,
    for a config whose lr_schedule says so)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if getattr(config, "lr_schedule", "cosine") == "constant":
        return config.lr
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> Int[Tensor, " batch"]:
    """Example indices of a step: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = n // batch_size
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[k * batch_size : (k + 1) * batch_size]


def answer_loss(
    logits: Float[Tensor, "batch logit_pos d_vocab"], tokens: Int[Tensor, "batch pos"],
    loss_mask: Tensor,
) -> Float[Tensor, ""]:
    """Mean next-token cross-entropy over the positions in loss_mask (answer / CoT / eos).
    `logits` may stop one position short: those of the last token predict nothing."""
    mask = loss_mask[:, 1:]
    per_tok = F.cross_entropy(logits[:, : tokens.shape[1] - 1].flatten(0, 1),
                              tokens[:, 1:].flatten(),
                              reduction="none").view_as(mask)
    return (per_tok * mask).sum() / mask.sum()


def run_with_activations(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], names: Sequence[str],
    hooks: Sequence = (),
) -> tuple[Float[Tensor, "batch pos d_vocab"], dict[str, Tensor]]:
    """Logits plus the named activations, keeping gradients (run_with_cache detaches);
    `hooks` (name, fn) pairs run too."""
    acts: dict[str, Tensor] = {}

    def keep(act: Tensor, hook, *, name: str) -> Tensor:
        acts[name] = act
        return act

    all_hooks = [*hooks, *((n, lambda act, hook, n=n: keep(act, hook, name=n)) for n in names)]
    logits = model.run_with_hooks(tokens, fwd_hooks=all_hooks) if all_hooks else model(tokens)
    return logits, acts


def _gapped_positions(act: Tensor, hook, *, weight: Tensor, start: int, gap: int) -> Tensor:
    """The position embedding of ids that skip `gap` positions from `start` on."""
    ids = torch.arange(act.shape[-2], device=act.device)
    return weight[torch.where(ids >= start, ids + gap, ids)].expand_as(act)


def parameter_groups(named: Sequence[tuple[str, torch.nn.Parameter]], weight_decay: float,
                     decay: Literal["matrices", "all"] = "matrices") -> list[dict]:
    """AdamW groups: decay on weight matrices (and embeddings) only, or on everything
    ('all'); parameters that need no gradient are left out (no update, no decay)."""
    trainable = [(n, p) for n, p in named if p.requires_grad]
    if decay == "all":
        return [{"params": [p for _, p in trainable], "weight_decay": weight_decay}]
    matrices = [p for _, p in trainable if p.ndim >= 2]
    rest = [p for _, p in trainable if p.ndim < 2]
    return [g for g in ({"params": matrices, "weight_decay": weight_decay},
                        {"params": rest, "weight_decay": 0.0}) if g["params"]]


def build_extra_losses(config: TrainConfig) -> torch.nn.ModuleList:
    """The extra-loss modules of a config, initialised from config.seed (the global RNG is
    left as it was), so a run and its resumed twin start from the same parameters."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return torch.nn.ModuleList([e.build(config) for e in config.extra_losses])


def held_out_split(path: str | Path, task: Task, n: int | None = None) -> Dataset:
    """The test split a checkpoint was trained against (a fresh seeded one when it has no
    training config), rendered for `task`, first n problems."""
    cfg_file = Path(path) / schema.TRAIN_CONFIG.file
    if cfg_file.is_file():
        tc = TrainConfig.from_dict(json.loads(cfg_file.read_text()))
        test = make_test_split(tc.task, tc.n_test, tc.seed, sampling=tc.sampling)
        if tc.task != task:
            keep = [i for i, (a, b) in enumerate(zip(test.a.tolist(), test.b.tolist(),
                                                     strict=True)) if task.is_valid(a, b)]
            test = make_dataset(task, test.a[keep], test.b[keep])
    else:
        test = make_test_split(task, n or 2_000, seed=12345)
    return test if n is None else test[:n]


def training_split(path: str | Path, task: Task) -> Dataset | None:
    """The training problems a checkpoint saw (None when it records no training config, or
    was trained on another task)."""
    cfg_file = Path(path) / schema.TRAIN_CONFIG.file
    if not cfg_file.is_file():
        return None
    tc = TrainConfig.from_dict(json.loads(cfg_file.read_text()))
    if tc.task != task:
        return None
    return make_splits(tc.task, tc.train_size, tc.n_test, tc.seed, sampling=tc.sampling)[0]


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a model per `config` into `out_dir`; `stop_after` stops (resumably) at that step."""
    out = Path(out_dir)
    ckpt = out / schema.CHECKPOINT_DIR
    dev = str(resolve_device(device))
    _prepare_dir(out, config, resume=resume, overwrite=overwrite)
    t0 = time.perf_counter()

    train_set, test_set = make_splits(config.task, config.train_size, config.n_test,
                                      config.seed, sampling=config.sampling)
    rendered: dict[Task, tuple[Dataset, Dataset]] = {config.task: (train_set, test_set)}

    def data_for(spec: Task) -> tuple[Dataset, Dataset]:
        if spec not in rendered:
            if replace(spec, cot_tokens_removed=config.task.cot_tokens_removed) == config.task:
                rendered[spec] = tuple(with_chain_removed(d, spec.cot_tokens_removed)
                                       for d in (train_set, test_set))
            else:
                rendered[spec] = (make_dataset(spec, train_set.a, train_set.b),
                                  make_dataset(spec, test_set.a, test_set.b))
        return rendered[spec]

    model = build_model(config.model, config.task, "cpu")
    extras = build_extra_losses(config)
    gen = torch.Generator().manual_seed(config.seed)  # for plug-ins that need randomness
    state = {"step": 0, "loss_sum": 0.0, "loss_count": 0, "stopped_early": False}
    opt_state = None
    if resume and ckpt.is_dir():
        model = load_model(ckpt).model
        saved = read_weights(ckpt / schema.EXTRA_WEIGHTS.file)
        gen.set_state(saved.pop("__generator__"))
        extras.load_state_dict(saved, strict=True)
        opt_state = torch.load(ckpt / schema.OPTIMIZER_STATE, weights_only=True)
        state = json.loads((ckpt / schema.LOOP_STATE).read_text())
        _truncate_metrics(out / schema.TRAIN_LOG.file, state["step"])
    move_to(model, dev).train()
    extras.to(dev).train()
    named = list(model.named_parameters()) + [(f"extra.{n}", p)
                                              for n, p in extras.named_parameters()]
    params = [p for _, p in named if p.requires_grad]

    def make_optimizer() -> torch.optim.Optimizer:
        return torch.optim.AdamW(parameter_groups(named, config.weight_decay, config.decay),
                                 lr=config.lr, betas=config.betas)

    opt = make_optimizer()
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    hook_names = sorted({n for e in extras for n in e.hook_names})

    bar = tqdm(total=config.max_steps, initial=state["step"], disable=not progress,
               desc="train", unit="step")
    if config.snapshot_every and state["step"] == 0:
        _snapshot(out, model, 0)
    if config.flush_denormal:  # undone below: later work keeps subnormal floats
        torch.set_flush_denormal(True)
    try:
        while state["step"] < config.max_steps and not state["stopped_early"]:
            step = state["step"]
            train_data = data_for(config.spec_at(step))[0]
            test_data = data_for(config.eval_spec(step))[1]
            if config.curriculum is not None and config.curriculum.resets_optimizer(step, config):
                opt = make_optimizer()
            batch = train_data[batch_indices(step, len(train_data), config.batch_size, config.seed)]
            tokens = batch.tokens.to(dev)
            logits, acts = run_with_activations(model, tokens[:, :-1], hook_names,
                                                config.position_hooks(model, train_data.spec))
            loss = answer_loss(logits, tokens, batch.loss_mask.to(dev))
            for extra in extras:
                loss = loss + extra.weight * extra(acts, batch, logits, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config)
            opt.step()
            state["step"] = step + 1
            state["loss_sum"] += float(loss.detach())
            state["loss_count"] += 1
            bar.update(1)
            if config.snapshot_every and state["step"] % config.snapshot_every == 0:
                _snapshot(out, model, state["step"])

            if state["step"] % config.eval_every == 0 or state["step"] == config.max_steps:
                probe_set = test_data[: config.eval_size]
                model.eval()
                with model.hooks(fwd_hooks=config.position_hooks(model, test_data.spec)):
                    result = evaluate(model, probe_set)
                    digit_loss = answer_digit_loss(model, probe_set)
                with model.hooks(fwd_hooks=config.position_hooks(model, train_data.spec)):
                    train_result = evaluate(model, train_data[: config.eval_size])
                model.train()
                record = {"step": state["step"], "loss": state["loss_sum"] / state["loss_count"],
                          "lr": lr_at(step, config), "exact_match": result.exact_match,
                          "digit_accuracy": result.digit_accuracy, "digit_loss": digit_loss,
                          "train_exact_match": train_result.exact_match,
                          "cot_tokens_removed": test_data.spec.cot_tokens_removed,
                          "tokens_seen": state["step"] * config.batch_size * tokens.shape[1]}
                _append_jsonl(out / schema.TRAIN_LOG.file, record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{result.exact_match:.3f}")
                state["loss_sum"], state["loss_count"] = 0.0, 0
                target = config.target_accuracy
                if target is not None and result.exact_match >= target \
                        and test_data.spec == config.eval_spec(config.max_steps):
                    state["stopped_early"] = True  # a curriculum must have reached its end first
            done = state["step"] >= config.max_steps or state["stopped_early"]
            if not done and (state["step"] % config.checkpoint_every == 0
                             or state["step"] == stop_after):
                _write_checkpoint(ckpt, model, config, config.eval_spec(state["step"]), opt,
                                  extras, gen, state)
            if state["step"] == stop_after and not done:
                bar.close()
                return TrainResult(out, state["step"], False, {}, time.perf_counter() - t0)
    finally:
        if config.flush_denormal:
            torch.set_flush_denormal(False)
    bar.close()

    model.eval()
    final_test = data_for(config.eval_spec(state["step"] - 1))[1]
    gap = config.curriculum.position_gap(final_test.spec) if config.curriculum else 0
    if gap:  # the saved model runs on plain positions
        close_position_gap(model, final_test.spec.prompt_len, gap)
    final = evaluate(model, final_test)
    save_model(model, config.model, final_test.spec, out)
    atomic_write_bytes(out / schema.EXTRA_WEIGHTS.file, safetensors_bytes(state_tensors(extras)))
    atomic_write_text(out / schema.TRAIN_FINAL.file, json.dumps(
        {"steps": state["step"], "stopped_early": state["stopped_early"], **final.summary()},
        indent=2) + "\n")
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(out, state["step"], state["stopped_early"], final.summary(),
                       time.perf_counter() - t0)


def _prepare_dir(out: Path, config: TrainConfig, *, resume: bool, overwrite: bool) -> None:
    cfg_text = json.dumps(config.to_dict(), indent=2) + "\n"
    cfg_file = out / schema.TRAIN_CONFIG.file
    if resume:
        if not (out / schema.CHECKPOINT_DIR).is_dir():
            raise FileNotFoundError(f"nothing to resume in {out}: no {schema.CHECKPOINT_DIR}/ "
                                    "folder")
        if json.loads(cfg_file.read_text()) != json.loads(cfg_text):
            raise ValueError(f"cannot resume {out}: its {schema.TRAIN_CONFIG.file} differs from "
                             "this config")
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to "
                                  "replace it or resume=True (--resume) to continue it")
        if not cfg_file.is_file():
            raise FileExistsError(f"refusing to overwrite {out}: it is not a training directory")
        shutil.rmtree(out)
    atomic_write_text(cfg_file, cfg_text)


def _write_checkpoint(ckpt: Path, model: HookedModel, config: TrainConfig, spec: Task,
                      opt: torch.optim.Optimizer, extras: torch.nn.Module,
                      gen: torch.Generator, state: dict) -> None:
    """Write into a fresh folder, then swap it in, so a crash leaves the old checkpoint."""
    tmp = ckpt.with_name(schema.CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, config.model, spec, tmp)
    extra = {**state_tensors(extras), "__generator__": gen.get_state()}
    atomic_write_bytes(tmp / schema.EXTRA_WEIGHTS.file, safetensors_bytes(extra))
    torch.save(opt.state_dict(), tmp / schema.OPTIMIZER_STATE)
    atomic_write_text(tmp / schema.LOOP_STATE, json.dumps(state) + "\n")
    old = ckpt.with_name(schema.CHECKPOINT_DIR + ".old")
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _snapshot(out: Path, model: HookedModel, step: int) -> None:
    """The weights at `step`, for progress measures over training (never read to resume)."""
    atomic_write_bytes(out / schema.SNAPSHOTS_DIR / schema.snapshot_file(step),
                       safetensors_bytes(state_tensors(model)))


def _append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop eval records written after the checkpoint we resume from."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))
