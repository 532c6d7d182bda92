"""The training loop: answer-token loss, warmup + cosine AdamW, evals, checkpoints, exact
resume; `train` is a plain function of (TrainConfig, output directory). The loss, the
schedule, batching and the parameter groups are shared with fine-tuning."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.core.engine import intervening, run
from arithinterp.core.interventions import Intervention
from arithinterp.evaluate import answer_digit_loss, evaluate
from arithinterp.models import (
    HookedModel,
    build_model,
    close_position_gap,
    move_to,
    position_embedding,
    resolve_device,
)
from arithinterp.tasks import Dataset, Task, make_dataset, make_splits
from arithinterp.tasks.data import with_chain_removed
from arithinterp.training.checkpoints import (
    append_metrics,
    prepare_dir,
    read_checkpoint,
    write_checkpoint,
    write_final,
    write_snapshot,
)
from arithinterp.training.config import TrainConfig
from arithinterp.training.plugins import build_extra_losses


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
    interventions: Sequence[Intervention] = (),
) -> tuple[Float[Tensor, "batch pos d_vocab"], dict[str, Tensor]]:
    """Logits plus the named activations, keeping gradients (for losses read off them), with
    `interventions` applied."""
    out = run(model, tokens, interventions, capture=names, detach=False)
    return out.logits, out.acts


@dataclass(frozen=True, eq=False)
class GappedPositions:
    """The position embedding of ids that skip `gap` positions from `start` on: the rows of
    `weight` a curriculum that keeps positions gives its shortened sequences."""

    weight: Tensor
    start: int
    gap: int

    def apply(self, act: Tensor) -> Tensor:
        ids = torch.arange(act.shape[-2], device=act.device)
        return self.weight[torch.where(ids >= self.start, ids + self.gap, ids)].expand_as(act)


def position_interventions(config: TrainConfig, model: HookedModel, spec: Task
                           ) -> list[Intervention]:
    """What gives `spec`'s batches the curriculum's position ids (nothing: plain ids)."""
    gap = config.curriculum.position_gap(spec) if config.curriculum else 0
    if not gap:
        return []
    return [Intervention("pos_embed", GappedPositions(position_embedding(model), spec.prompt_len,
                                                      gap))]


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


@dataclass(frozen=True)
class TrainResult:
    """Where the model went, how far it got and how well it does on held-out problems."""

    path: Path
    steps: int
    stopped_early: bool
    final: dict  # EvalResult.summary() on the full test split
    seconds: float


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
    dev = str(resolve_device(device))
    prepare_dir(out, config, resume=resume, overwrite=overwrite)
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
    if resume:  # prepare_dir made sure there is a checkpoint
        model, opt_state, state = read_checkpoint(out, extras, gen)
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
        write_snapshot(out, model, 0)
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
            logits, acts = run_with_activations(
                model, tokens[:, :-1], hook_names,
                position_interventions(config, model, train_data.spec))
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
                write_snapshot(out, model, state["step"])

            if state["step"] % config.eval_every == 0 or state["step"] == config.max_steps:
                probe_set = test_data[: config.eval_size]
                model.eval()
                with intervening(model, position_interventions(config, model, test_data.spec)):
                    result = evaluate(model, probe_set)
                    digit_loss = answer_digit_loss(model, probe_set)
                with intervening(model, position_interventions(config, model, train_data.spec)):
                    train_result = evaluate(model, train_data[: config.eval_size])
                model.train()
                record = {"step": state["step"], "loss": state["loss_sum"] / state["loss_count"],
                          "lr": lr_at(step, config), "exact_match": result.exact_match,
                          "digit_accuracy": result.digit_accuracy, "digit_loss": digit_loss,
                          "train_exact_match": train_result.exact_match,
                          "cot_tokens_removed": test_data.spec.cot_tokens_removed,
                          "tokens_seen": state["step"] * config.batch_size * tokens.shape[1]}
                append_metrics(out, record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{result.exact_match:.3f}")
                state["loss_sum"], state["loss_count"] = 0.0, 0
                target = config.target_accuracy
                if target is not None and result.exact_match >= target \
                        and test_data.spec == config.eval_spec(config.max_steps):
                    state["stopped_early"] = True  # a curriculum must have reached its end first
            done = state["step"] >= config.max_steps or state["stopped_early"]
            if not done and (state["step"] % config.checkpoint_every == 0
                             or state["step"] == stop_after):
                write_checkpoint(out, model, config, config.eval_spec(state["step"]), opt,
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
    write_final(out, model, config, final_test.spec, extras,
                {"steps": state["step"], "stopped_early": state["stopped_early"],
                 **final.summary()})
    return TrainResult(out, state["step"], state["stopped_early"], final.summary(),
                       time.perf_counter() - t0)

