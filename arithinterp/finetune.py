"""Selective fine-tuning: train only chosen components, everything else bitwise frozen.

A component's weights are slices of the model's linear layers (`models.component_slices`:
a head owns its rows of W_Q, W_K, W_V and its columns of W_O; an MLP its weights; under
grouped-query attention a head's shared key/value head is trained when any of its query
heads is selected). `finetune` masks the gradient of every weight to those slices, leaves
weights without a selected slice out of the optimizer (no update, no decay), and applies
AdamW's decoupled weight decay through the same mask, so frozen entries are bitwise
unchanged and their optimizer moments stay exactly zero. With `rescale`, the gradients of
head slices are multiplied by H/h (H heads in the model, h selected), as in Zhang et al.
(2024). No components means full fine-tuning (every parameter, the usual decay groups).

The data is anything with ``tokens`` and ``loss_mask`` (a task `Dataset`, or LLM prompts);
the loss is the answer-token cross-entropy of the training loop, and so are the
learning-rate schedule and the batch order.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.components import Component, check_component
from arithinterp.fields import check_float, check_int, described
from arithinterp.models import (
    HookedModel,
    component_slices,
    device_of,
    facts,
    parameters_by_key,
)
from arithinterp.training.loop import answer_loss, batch_indices, lr_at, parameter_groups


@runtime_checkable
class TokenData(Protocol):
    """Training data: token ids and which of them are targets (the loss mask)."""

    tokens: Int[Tensor, "batch pos"]
    loss_mask: Bool[Tensor, "batch pos"]


@dataclass(frozen=True)
class Schedule:
    """Steps, learning rate and the rest of one fine-tuning run (seeded batch order)."""

    max_steps: int = described(200, "Steps per fine-tune.")
    lr: float = described(1e-3, "Peak learning rate.")
    warmup_steps: int = 10
    batch_size: int = described(128, "Problems per step.")
    weight_decay: float = 0.01
    grad_clip: float | None = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("max_steps", self.max_steps, min=1)
        check_int("batch_size", self.batch_size, min=1)
        check_float("lr", self.lr, min=0, min_open=True)
        check_float("weight_decay", self.weight_decay, min=0)
        check_int("warmup_steps", self.warmup_steps, min=0)


def component_masks(model: HookedModel, components: Sequence[Component | str]
                    ) -> dict[str, Tensor]:
    """{state-dict key: bool mask} of the entries the components own (masks of components
    that share a weight are merged)."""
    f = facts(model)
    comps = [check_component(f, c) for c in components]
    if not comps:
        raise ValueError("no components selected: name at least one (or fine-tune everything)")
    state = model.state_dict()
    masks: dict[str, Tensor] = {}
    for comp in comps:
        for key, index in component_slices(model, comp).items():
            mask = masks.setdefault(key, torch.zeros_like(state[key], dtype=torch.bool))
            mask[index] = True
    return masks


def grad_multipliers(model: HookedModel, components: Sequence[Component | str], *,
                     rescale: bool = False) -> dict[str, Tensor]:
    """{state-dict key: what the gradient is multiplied by}: 1 on the components' entries (H/h
    on attention entries with `rescale`: H heads in the model, h of them selected), 0
    elsewhere. Weights absent from the dict are not trained at all."""
    masks = component_masks(model, components)
    f = facts(model)
    n_heads = sum(1 for c in components if Component.parse(c).kind == "head")
    scale = f.n_layers * f.n_heads / n_heads if rescale and n_heads else 1.0
    return {k: m.float() * (scale if ".attn." in k else 1.0) for k, m in masks.items()}


def count_trainable(model: HookedModel, masks: dict[str, Tensor] | None) -> int:
    """Parameters a fine-tune updates: the masked entries, or every parameter."""
    if masks is None:
        return sum(p.numel() for p in model.parameters())
    return int(sum(int(m.sum()) for m in masks.values()))


@dataclass
class FinetuneResult:
    """What one fine-tune did: the loss curve, its time, how many parameters it could
    change, the tensors that did change, and the optimizer (for inspection)."""

    curve: pd.DataFrame  # step, loss (and whatever the callback returned)
    seconds: float
    n_params: int
    changed: dict[str, Tensor]
    optimizer: torch.optim.Optimizer


def finetune(
    model: HookedModel, data: TokenData, schedule: Schedule, *,
    components: Sequence[Component | str] | None = None, rescale: bool = False,
    every: int = 0, callback: Callable[[int], dict] | None = None, progress: bool = False,
) -> FinetuneResult:
    """Fine-tune `model` in place on `data`: only the `components` (None: everything), every
    other entry bitwise frozen. `callback(step)` runs every `every` steps (its dict joins the
    curve: e.g. a held-out accuracy); the model is in eval mode while it runs."""
    n = data.tokens.shape[0]
    if schedule.batch_size > n:
        raise ValueError(f"batch_size ({schedule.batch_size}) exceeds the {n} examples")
    params: dict[str, torch.nn.Parameter] = {}
    for key, p in parameters_by_key(model).items():  # tied weights: one key each
        if all(q is not p for q in params.values()):
            params[key] = p
    multipliers = (grad_multipliers(model, components, rescale=rescale)
                   if components is not None else None)
    before = {k: p.detach().clone() for k, p in params.items()}
    device = device_of(model)
    handles, decay_masks = [], {}
    trained: list[tuple[str, torch.nn.Parameter]] = []
    for key, p in params.items():
        if multipliers is not None and key not in multipliers:
            p.requires_grad_(False)
            continue
        p.requires_grad_(True)
        trained.append((key, p))
        if multipliers is not None:
            grad_mask = multipliers[key].to(device, p.dtype)
            handles.append(p.register_hook(lambda g, m=grad_mask: g * m))
            decay_masks[id(p)] = (grad_mask != 0).to(p.dtype)
    if multipliers is None:
        groups = parameter_groups(trained, schedule.weight_decay)
    else:  # decay goes through the mask below, not through AdamW
        groups = [{"params": [p for _, p in trained], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=schedule.lr)
    rows = []
    t0 = time.perf_counter()
    model.train()
    try:
        for step in tqdm(range(schedule.max_steps), desc="finetune", disable=not progress,
                         unit="step"):
            idx = batch_indices(step, n, schedule.batch_size, schedule.seed)
            tokens = data.tokens[idx].to(device)
            loss = answer_loss(model(tokens[:, :-1]), tokens,
                               data.loss_mask[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if schedule.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_([p for _, p in trained], schedule.grad_clip)
            lr = lr_at(step, schedule)
            with torch.no_grad():
                for _, p in trained:
                    if id(p) in decay_masks:  # masked decoupled decay: frozen entries × 1.0
                        p.mul_(1 - lr * schedule.weight_decay * decay_masks[id(p)])
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            row = {"step": step + 1, "loss": float(loss.detach())}
            if callback is not None and every and ((step + 1) % every == 0
                                                   or step + 1 == schedule.max_steps):
                model.eval()
                row.update(callback(step + 1))
                model.train()
            rows.append(row)
    finally:
        for h in handles:
            h.remove()
        for p in params.values():
            p.requires_grad_(True)
        model.eval()
    seconds = time.perf_counter() - t0
    changed = {k: p.detach().cpu().clone() for k, p in params.items()
               if not torch.equal(p.detach(), before[k])}
    masks = None if multipliers is None else {k: m != 0 for k, m in multipliers.items()}
    return FinetuneResult(pd.DataFrame(rows), seconds, count_trainable(model, masks), changed,
                          opt)


def copy_model(model: HookedModel) -> HookedModel:
    """An independent copy of a model (fine-tunes run on copies of the base)."""
    return copy.deepcopy(model)
