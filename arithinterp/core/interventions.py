"""Interventions as values: what to do (an operation) to which activation (a site, a layer and
an index into the site's axes).

An `Intervention` names a registered site (`components.site_info`), optionally its layer, a
head, a position and a slice of the batch; its operation maps the indexed part of the
activation to its new value. Operations are plain values: replace with a tensor (a donor's
activation, a mean, a resampled run, zeros), replace where a mask says so (conditions stacked
on the batch axis), add a vector, or replace only the part inside a subspace spanned by a
basis — fixed, or a trainable parameter that gradients reach. Several interventions compose:
at one hook they apply in the order given. `engine` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from arithinterp.components import hook_name, site_info


@runtime_checkable
class Operation(Protocol):
    """Maps the indexed part of an activation to its new value (same shape)."""

    def apply(self, act: Tensor) -> Tensor: ...


@dataclass(frozen=True, eq=False)
class Replace:
    """Set to `value` (broadcast to the indexed part): a donor's activation, a mean, a
    resampled run's."""

    value: Tensor

    def apply(self, act: Tensor) -> Tensor:
        return self.value.to(act.dtype).expand_as(act)


@dataclass(frozen=True)
class Zero:
    """Set to zero (zero ablation)."""

    def apply(self, act: Tensor) -> Tensor:
        return torch.zeros_like(act)


@dataclass(frozen=True, eq=False)
class ReplaceWhere:
    """Take `value` where `mask` is true (both broadcast to the indexed part), keep the rest."""

    value: Tensor
    mask: Tensor

    def apply(self, act: Tensor) -> Tensor:
        return torch.where(self.mask, self.value.to(act.dtype), act)


@dataclass(frozen=True, eq=False)
class Add:
    """Add `value` (a steering vector, or the change a patch upstream would make)."""

    value: Tensor

    def apply(self, act: Tensor) -> Tensor:
        return act + self.value.to(act.dtype)


@dataclass(frozen=True, eq=False)
class ReplaceInSubspace:
    """Replace the component of the activation inside span(basis) by the source's, keep the
    orthogonal rest: act + (source − act) P, with P the orthogonal projection onto the span
    of basis's k columns ([d, k], full column rank). With an orthonormal basis P = B Bᵀ; a
    trainable basis (an `nn.Parameter`) receives gradients through the run."""

    basis: Float[Tensor, "d k"]
    source: Tensor

    def apply(self, act: Tensor) -> Tensor:
        b = self.basis.to(act.dtype)
        projection = b @ torch.linalg.pinv(b)  # [d d]; B (BᵀB)⁻¹ Bᵀ
        return act + (self.source.to(act.dtype) - act) @ projection


@dataclass(frozen=True, eq=False)
class Intervention:
    """`op` applied to `site` (a registered site name) at `layer`, restricted to one head,
    one position (a query position for attention patterns), a slice of the batch and some
    units of the last axis (neurons, dimensions, features) where given; None takes the
    whole axis."""

    site: str
    op: Operation
    layer: int | None = None
    head: int | None = None
    pos: int | None = None
    batch: slice | None = None
    units: tuple[int, ...] | None = None

    @property
    def hook(self) -> str:
        """The hook name the intervention acts at."""
        return hook_name(self.site, self.layer)

    def index(self) -> tuple:
        """The index into the site's activation, from its registered axes."""
        given = {"batch": self.batch, "head": self.head, "pos": self.pos}
        axes = site_info(self.site).axes
        for name in ("head", "pos"):
            if given[name] is not None and name not in axes:
                raise ValueError(f"site {self.site!r} has no {name} axis (axes: {axes})")
        if self.units is not None:
            return (*(slice(None) if given.get(a) is None else given[a] for a in axes[:-1]),
                    torch.tensor(self.units))
        used = [a for a in axes if given.get(a) is not None]
        if not used:
            return (slice(None),)
        last = max(axes.index(a) for a in used)
        return tuple(slice(None) if given.get(a) is None else given[a] for a in axes[:last + 1])


def patch(site: str, layer: int | None, donor: dict[str, Tensor],
          base: dict[str, Tensor] | None = None, *, head: int | None = None,
          pos: int | None = None, units: tuple[int, ...] | None = None) -> Intervention:
    """Replace `site` at (layer, head, pos, units) by the donor run's activation; `donor` and `base`
    map hook names to the donor's and the base run's activations (`base` is read only for
    resid_mid). A residual-stream patch after attention is an additive change of the
    attention output: in TransformerLens's bridge, a value returned at ``hook_resid_mid``
    reaches only the MLP's input, not the skip connection."""
    where = Intervention(site, Zero(), layer, head, pos, units=units)
    idx, name = where.index(), where.hook
    if site == "resid_mid":
        if base is None:
            raise ValueError("a resid_mid patch needs the base run's resid_mid")
        return Intervention("attn_out", Add(donor[name][idx] - base[name][idx]), layer, pos=pos)
    return replace(where, op=Replace(donor[name][idx]))
