"""The hook engine: runs a model with interventions applied and activations captured, on any
TransformerLens bridge. It is the one place that registers hooks.

`intervening` is a context in which every forward pass of the model carries the
interventions (and fills a capture store); `run` is one forward pass under it. The grad mode
is the caller's: under `torch.inference_mode()` a run records nothing, outside it gradients
flow through every intervention (a trainable basis included) and captured activation.
`run_with_gradients` adds a zero leaf at each named activation so that one backward pass
gives ∂metric/∂activation per prompt, without touching any parameter's `.grad`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.core.interventions import Intervention
from arithinterp.models import HookedModel


@dataclass
class Capture:
    """Activations a run captured by hook name, after the interventions at that hook."""

    names: frozenset[str]
    acts: dict[str, Tensor] = field(default_factory=dict)
    detach: bool = False  # keep graph-free copies (cheaper) unless gradients are wanted

    @classmethod
    def of(cls, names, *, detach: bool = False) -> Capture:
        return cls(frozenset(names), detach=detach)


@dataclass(frozen=True)
class Run:
    """A run's logits and what it captured."""

    logits: Float[Tensor, "batch pos d_vocab"]
    acts: dict[str, Tensor]


def _hook(act: Tensor, hook, *, name: str, items: Sequence[Intervention],
          capture: Capture | None, leaves: dict[str, Tensor] | None) -> Tensor:
    if items:
        act = act.clone()
        for item in items:
            idx = item.index()
            act[idx] = item.op.apply(act[idx])
    if capture is None or name not in capture.names:
        return act
    if leaves is None:
        capture.acts[name] = act.detach() if capture.detach else act
        return act
    if name in leaves:
        raise ValueError(f"hook {name} fired twice in one forward pass; gradients need each "
                         "hooked activation to be used once")
    # The bridge reshapes some activations (hook_z, hook_q, ...) for the hook and consumes the
    # returned tensor, so retain_grad() on `act` would see no gradient; adding a zero leaf to
    # the returned tensor does: its gradient is ∂out/∂act.
    leaves[name] = torch.zeros_like(act, requires_grad=True)
    capture.acts[name] = act.detach()
    return act + leaves[name]


def _hooks(interventions: Sequence[Intervention], capture: Capture | None,
           leaves: dict[str, Tensor] | None = None) -> list[tuple[str, Callable]]:
    by_hook: dict[str, list[Intervention]] = {}
    for item in interventions:
        by_hook.setdefault(item.hook, []).append(item)
    names = set(by_hook) | (set(capture.names) if capture is not None else set())
    return [(n, partial(_hook, name=n, items=by_hook.get(n, ()), capture=capture,
                        leaves=leaves)) for n in sorted(names)]


@contextmanager
def intervening(model: HookedModel, interventions: Sequence[Intervention] = (),
                capture: Capture | None = None) -> Iterator[None]:
    """Every forward pass of `model` inside the block carries `interventions` and fills
    `capture`; the hooks are removed on exit, also after an error."""
    with model.hooks(fwd_hooks=_hooks(interventions, capture)):
        yield


def run(model: HookedModel, tokens: Int[Tensor, "batch pos"],
        interventions: Sequence[Intervention] = (), *, capture: Collection[str] = (),
        detach: bool = True) -> Run:
    """One forward pass with `interventions`, capturing the activations at hook names
    `capture` (detached unless `detach=False`, for losses read off activations)."""
    store = Capture.of(capture, detach=detach)
    if not interventions and not capture:
        return Run(model(tokens), {})
    try:
        with intervening(model, interventions, store):
            logits = model(tokens)
    except KeyError as e:  # the bridge refuses hook names this model does not have
        raise ValueError(f"this model has no such activation: {e}") from e
    missing = sorted(set(capture) - set(store.acts))
    if missing:
        raise ValueError(f"this model has no such activation: hooks {missing} never fired")
    return Run(logits, store.acts)


def capture_activations(model: HookedModel, tokens: Int[Tensor, "batch pos"],
                        names: Collection[str]) -> dict[str, Tensor]:
    """The (detached) activations at hook names `names` of an unmodified run. A
    ``hook_resid_mid`` is computed as resid_pre + attn_out, which every model has
    (attention-only models have no resid_mid hook)."""
    names = set(names)
    mids = {n for n in names if n.endswith("hook_resid_mid")}
    wanted = (names - mids) | {n.replace("hook_resid_mid", s) for n in mids
                               for s in ("hook_resid_pre", "hook_attn_out")}
    acts = run(model, tokens, capture=sorted(wanted)).acts
    out = {n: acts[n] for n in names - mids}
    for n in mids:
        out[n] = acts[n.replace("hook_resid_mid", "hook_resid_pre")] + \
            acts[n.replace("hook_resid_mid", "hook_attn_out")]
    return out


def activation_cache(model: HookedModel, tokens: Int[Tensor, "batch pos"]):
    """TransformerLens's own ActivationCache of a whole run, for its functions used as
    oracles (its patching functions take one)."""
    return model.run_with_cache(tokens)[1]


def run_with_gradients(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], names: Sequence[str],
    metric: Callable[[Tensor], Tensor], interventions: Sequence[Intervention] = (),
) -> tuple[dict[str, Tensor], dict[str, Tensor], Float[Tensor, " batch"]]:
    """Activations at `names`, ∂metric/∂activation per prompt, and the metric, in one
    forward + backward (autograd.grad: no parameter's .grad is touched). Prompts do not
    interact, so the gradient of the summed metric is each prompt's own gradient."""
    if torch.is_inference_mode_enabled():
        raise ValueError("gradients are needed: call this outside torch.inference_mode()")
    store = Capture.of(names)
    leaves: dict[str, Tensor] = {}
    with torch.enable_grad():
        try:
            with model.hooks(fwd_hooks=_hooks(interventions, store, leaves)):
                score = metric(model(tokens))
        except KeyError as e:
            raise ValueError(f"this model has no such activation: {e}") from e
        missing = [n for n in names if n not in leaves]
        if missing:
            raise ValueError(f"this model has no such activation: hooks {missing} never fired")
        grads = torch.autograd.grad(score.sum(), [leaves[n] for n in names], allow_unused=True)
    grads_by_name = {n: torch.zeros_like(store.acts[n]) if g is None else g
                     for n, g in zip(names, grads, strict=True)}
    return store.acts, grads_by_name, score.detach()
