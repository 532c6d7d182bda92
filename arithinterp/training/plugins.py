"""The plug-ins a training config names by kind, curricula and extra losses: registered
families, so a saved config replays them and a sweep can vary them.

- ``curriculum`` (`Curriculum`): which task spec renders the batches of each step, e.g.
  ``icot``, the implicit chain-of-thought schedule of Deng et al. (2024): the chain's first
  tokens are removed a few at a time, the optimizer reset at each removal; ``mix``
  interleaves other tasks with the config's own;
- ``extra_losses`` (`ExtraLossConfig`): terms read off hooked activations and added to the
  loss, with parameters of their own that are trained and saved with the model, e.g.
  ``running_sum``, Bai et al.'s (2025) linear head regressing the running sums.

A plug-in registers its class on import; `training.config` imports this module, so every
saved config that names one of these kinds loads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from arithinterp import schema
from arithinterp.components import hook_name
from arithinterp.fields import check_float, check_int, check_ints
from arithinterp.models import ModelSpec, context_length
from arithinterp.tasks import Dataset, Task, TaskSpec
from arithinterp.tasks.data import make_test_split, problem_space_size


@runtime_checkable
class TrainSetup(Protocol):
    """What a plug-in reads of the training config it serves (a `config.TrainConfig`)."""

    task: Task
    model: ModelSpec
    seed: int
    batch_size: int
    extra_losses: tuple[ExtraLossConfig, ...]

    @property
    def train_size(self) -> int: ...


# ---- curricula -----------------------------------------------------------------------------
class Curriculum(schema.Registered):
    """A schedule of task specs over steps (a registered family, stored with its kind)."""

    def check(self, config: TrainSetup) -> None:
        """Refuse (ValueError) a config this curriculum cannot train."""

    def spec_at(self, step: int, config: TrainSetup) -> Task:
        """The task spec whose rendering trains step `step`."""
        raise NotImplementedError

    def resets_optimizer(self, step: int, config: TrainSetup) -> bool:
        """Whether the optimizer starts afresh before step `step`."""
        return False

    def eval_spec(self, step: int, config: TrainSetup) -> Task:
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
        check_ints("weights", self.weights, min=1)

    def check(self, config: TrainSetup) -> None:
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

    def spec_at(self, step: int, config: TrainSetup) -> Task:
        slot = step % sum(self.weights)
        for spec, weight in zip((config.task, *self.tasks), self.weights, strict=True):
            if slot < weight:
                return spec
            slot -= weight
        raise AssertionError("unreachable: slot is below the sum of the weights")

    def eval_spec(self, step: int, config: TrainSetup) -> Task:
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
        check_int("tokens_per_stage", self.tokens_per_stage, min=1)
        check_int("stage_steps", self.stage_steps, min=1, optional=True)
        check_int("full_chain_steps", self.full_chain_steps, min=0, optional=True)
        check_float("smoothing", self.smoothing, min=0)
        check_int("max_extra", self.max_extra, min=0)

    def check(self, config: TrainSetup) -> None:
        if config.task.format != "cot" or config.task.cot_tokens_removed:
            raise ValueError("curriculum icot trains format 'cot' from the full chain "
                             f"(cot_tokens_removed=0), got task {config.task.name} with "
                             f"cot_tokens_removed={config.task.cot_tokens_removed}")
        if self.keep_positions and config.model.positional != "standard":
            raise ValueError("keep_positions needs learned positions (positional='standard')")

    def position_gap(self, spec: Task) -> int:
        return spec.cot_tokens_removed if self.keep_positions else 0

    def chain_length(self, config: TrainSetup) -> int:
        return config.task.max_cot_tokens

    def _steps(self, config: TrainSetup) -> int:
        return self.stage_steps or max(1, config.train_size // config.batch_size)

    def removed_at(self, step: int, config: TrainSetup) -> int:
        """Chain tokens scheduled for removal at `step` (without smoothing)."""
        per_stage = self._steps(config)
        first = per_stage if self.full_chain_steps is None else self.full_chain_steps
        if step < first:
            return 0
        stage = 1 + (step - first) // per_stage
        return min(self.chain_length(config), stage * self.tokens_per_stage)

    def spec_at(self, step: int, config: TrainSetup) -> Task:
        removed = self.removed_at(step, config)
        if self.smoothing > 0 and 0 < removed < self.chain_length(config):
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step + 7)
            extra = torch.arange(self.max_extra + 1, dtype=torch.float64)
            o = int(torch.multinomial(torch.exp(-self.smoothing * extra), 1, generator=gen))
            removed = min(self.chain_length(config), removed + o)
        return replace(config.task, cot_tokens_removed=removed)

    def eval_spec(self, step: int, config: TrainSetup) -> Task:
        return replace(config.task, cot_tokens_removed=self.removed_at(step, config))

    def resets_optimizer(self, step: int, config: TrainSetup) -> bool:
        return (self.reset_optimizer and step > 0
                and self.removed_at(step, config) != self.removed_at(step - 1, config))


# ---- extra losses --------------------------------------------------------------------------
class ExtraLossConfig(schema.Registered):
    """An extra loss term (a registered family); `build` makes its trainable module."""

    weight: float

    def check(self, config: TrainSetup) -> None:
        """Refuse (ValueError) a config this loss cannot train."""

    def build(self, config: TrainSetup) -> ExtraLoss:
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
        check_float("weight (λ)", self.weight, min=0)
        check_int("layer", self.layer, min=0, optional=True)
        if self.heads is not None and self.site != "z":
            raise ValueError("heads only applies to site 'z'")

    def check(self, config: TrainSetup) -> None:
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

    def build(self, config: TrainSetup) -> ExtraLoss:
        return RunningSumHead(self, config)


class RunningSumHead(ExtraLoss):
    """The module of `RunningSumLoss` (statistics of c_k from the training task)."""

    def __init__(self, cfg: RunningSumLoss, config: TrainSetup) -> None:
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


def build_extra_losses(config: TrainSetup) -> torch.nn.ModuleList:
    """The extra-loss modules of a config, initialised from config.seed (the global RNG is
    left as it was), so a run and its resumed twin start from the same parameters."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return torch.nn.ModuleList([e.build(config) for e in config.extra_losses])
