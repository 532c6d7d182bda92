"""Components of a transformer and the hook names of their sites: the one place either is named.

A component is a head (``L1H3``), an MLP layer (``L0.mlp``), a whole attention layer
(``L1.attn``) or the residual stream of a layer (``L0.resid``). It is a frozen object with a
``name``; names are parsed back only at the edges (the command line, a stored table). Hook
names are TransformerLens's classic ones (``blocks.1.attn.hook_z``) and come only from
`hook_name`.

Sites form an open registry (`register_site`): every activation a method can read or write,
with its axes, the component it belongs to and its role — a component's output, a receiver's
input (a head's query/key/value input, an MLP's input, the unembedding's input) or internal.
A new kind of site (an SAE's features, say) registers itself without editing this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, SupportsInt, runtime_checkable

from arithinterp.fields import check_choice, check_int

Kind = Literal["head", "mlp", "attn", "resid"]
KINDS: tuple[str, ...] = ("head", "mlp", "attn", "resid")
# within a layer, in forward order (ties in rankings break this way)
KIND_ORDER = {"resid": 0, "attn": 1, "head": 2, "mlp": 3}
_HEAD = re.compile(r"L(\d+)H(\d+)")
_LAYER = re.compile(r"L(\d+)\.(mlp|attn|resid)")

@dataclass(frozen=True)
class SiteInfo:
    """A named activation a method can read or write: its hook-name template ({L} = layer;
    layer-free sites have none), its axes, the component kind it belongs to and its role
    ('output' of a component, 'input' of a receiver, or 'internal')."""

    name: str
    template: str
    axes: tuple[str, ...]
    kind: str | None = None
    role: Literal["output", "input", "internal"] = "internal"

    @property
    def per_layer(self) -> bool:
        return "{L}" in self.template


_SITES: dict[str, SiteInfo] = {}


def register_site(name: str, template: str, axes: tuple[str, ...], *, kind: str | None = None,
                  role: Literal["output", "input", "internal"] = "internal") -> SiteInfo:
    """Add a site to the registry (an SAE's features, a transcoder's error term, ...); a name
    already taken is refused, so two kinds of activation never share one."""
    if name in _SITES:
        raise ValueError(f"site {name!r} is already registered ({_SITES[name].template})")
    if "batch" not in axes:
        raise ValueError(f"site {name!r}: axes must include 'batch', got {axes}")
    _SITES[name] = info = SiteInfo(name, template, tuple(axes), kind, role)
    return info


def site_info(name: str) -> SiteInfo:
    """The registered site `name`; anything else is a ValueError listing the known ones."""
    if name not in _SITES:
        raise ValueError(f"unknown site {name!r}; known: {', '.join(_SITES)}")
    return _SITES[name]


def sites(role: str | None = None) -> tuple[str, ...]:
    """Names of the registered sites (of one role when given), in registration order."""
    return tuple(n for n, s in _SITES.items() if role is None or s.role == role)


_RESID_AXES = ("batch", "pos", "d_model")
_HEAD_AXES = ("batch", "pos", "head", "d_head")
for _name, _template, _axes, _kind, _role in (
    ("embed", "hook_embed", _RESID_AXES, None, "output"),
    ("pos_embed", "hook_pos_embed", _RESID_AXES, None, "output"),
    ("resid_pre", "blocks.{L}.hook_resid_pre", _RESID_AXES, "resid", "internal"),
    ("resid_mid", "blocks.{L}.hook_resid_mid", _RESID_AXES, "resid", "internal"),
    ("resid_post", "blocks.{L}.hook_resid_post", _RESID_AXES, "resid", "output"),
    ("attn_out", "blocks.{L}.hook_attn_out", _RESID_AXES, "attn", "output"),
    ("mlp_out", "blocks.{L}.hook_mlp_out", _RESID_AXES, "mlp", "output"),
    ("z", "blocks.{L}.attn.hook_z", _HEAD_AXES, "head", "output"),
    ("q", "blocks.{L}.attn.hook_q", _HEAD_AXES, "head", "internal"),
    ("k", "blocks.{L}.attn.hook_k", _HEAD_AXES, "head", "internal"),
    ("v", "blocks.{L}.attn.hook_v", _HEAD_AXES, "head", "internal"),
    ("pattern", "blocks.{L}.attn.hook_pattern", ("batch", "head", "pos", "key_pos"), "head",
     "internal"),
    ("attn_scores", "blocks.{L}.attn.hook_attn_scores", ("batch", "head", "pos", "key_pos"),
     "head", "internal"),
    ("result", "blocks.{L}.attn.hook_result", ("batch", "pos", "head", "d_model"), "head",
     "output"),
    ("mlp_pre", "blocks.{L}.mlp.hook_pre", ("batch", "pos", "d_mlp"), "mlp", "internal"),
    ("mlp_post", "blocks.{L}.mlp.hook_post", ("batch", "pos", "d_mlp"), "mlp", "internal"),
    ("scale", "ln_final.hook_scale", ("batch", "pos", "one"), None, "internal"),
    ("normalized", "ln_final.hook_normalized", _RESID_AXES, None, "internal"),
    # receiver inputs: what a head's query / key / value, an MLP and the unembedding read
    ("q_input", "blocks.{L}.hook_q_input", ("batch", "pos", "head", "d_model"), "head", "input"),
    ("k_input", "blocks.{L}.hook_k_input", ("batch", "pos", "head", "d_model"), "head", "input"),
    ("v_input", "blocks.{L}.hook_v_input", ("batch", "pos", "head", "d_model"), "head", "input"),
    ("mlp_in", "blocks.{L}.hook_mlp_in", _RESID_AXES, "mlp", "input"),
    ("logits_in", "ln_final.hook_in", _RESID_AXES, None, "input"),
):
    register_site(_name, _template, _axes, kind=_kind, role=_role)


@runtime_checkable
class Shape(Protocol):
    """What enumerating components needs to know about a model (see `models.ModelFacts`)."""

    n_layers: int
    n_heads: int
    attn_only: bool


@dataclass(frozen=True)
class Component:
    """A head, an MLP, an attention layer or a layer's residual stream."""

    kind: Kind
    layer: int
    head: int | None = None

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        check_int("layer", self.layer, min=0)
        if self.kind == "head":
            check_int("head", self.head, min=0)
        elif self.head is not None:
            raise ValueError(f"a {self.kind} component has no head index, got {self.head!r}")

    @property
    def name(self) -> str:
        """'L1H3', 'L0.mlp', 'L1.attn' or 'L0.resid'."""
        return f"L{self.layer}H{self.head}" if self.kind == "head" else \
            f"L{self.layer}.{self.kind}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str | Component) -> Component:
        """The component a name stands for (a Component passes through); anything else is a
        ValueError naming the forms."""
        if isinstance(name, Component):
            return name
        if m := _HEAD.fullmatch(str(name)):
            return cls("head", int(m[1]), int(m[2]))
        if m := _LAYER.fullmatch(str(name)):
            return cls(m[2], int(m[1]))  # type: ignore[arg-type]
        raise ValueError(f"{name!r} is not a component name: expected 'L<layer>H<head>' (a head), "
                         "'L<layer>.mlp', 'L<layer>.attn' or 'L<layer>.resid'")

    @property
    def site(self) -> str:
        """The site whose activation is this component's output (its ablation target)."""
        return {"head": "z", "mlp": "mlp_out", "attn": "attn_out", "resid": "resid_post"}[
            self.kind]

    @property
    def hook(self) -> str:
        """The hook name of `site` at this component's layer."""
        return hook_name(self.site, self.layer)

    @property
    def order(self) -> tuple[int, int, int]:
        """Sort key in forward order: layer, then resid < attn < heads < mlp, then head."""
        return self.layer, KIND_ORDER[self.kind], -1 if self.head is None else self.head


def hook_name(site: str, layer: int | None = None) -> str:
    """The classic TransformerLens hook name: ('z', 1) -> 'blocks.1.attn.hook_z'."""
    template = site_info(site).template
    if "{L}" not in template:
        if layer is not None:
            raise ValueError(f"site {site!r} has no layer, got layer={layer!r}")
        return template
    check_int("layer", layer, min=0)
    return template.format(L=layer)


def layer_label(layer: SupportsInt) -> str:
    """Axis label of a layer: 'L0'."""
    return f"L{int(layer)}"


def neuron_label(layer: SupportsInt, neuron: SupportsInt) -> str:
    """Name of one MLP neuron: 'L1.n37'."""
    return f"{layer_label(layer)}.n{int(neuron)}"


def head_label(head: SupportsInt) -> str:
    """Axis label of a head within its layer: 'H3'."""
    return f"H{int(head)}"


def all_components(shape: Shape, kind: Kind | None = None) -> list[Component]:
    """Every component of `kind` (every head and MLP when None) in forward order."""
    kinds = ("head", "mlp") if kind is None else (kind,)
    out = []
    for layer in range(shape.n_layers):
        if "attn" in kinds:
            out.append(Component("attn", layer))
        if "head" in kinds:
            out += [Component("head", layer, h) for h in range(shape.n_heads)]
        if "mlp" in kinds and not shape.attn_only:
            out.append(Component("mlp", layer))
        if "resid" in kinds:
            out.append(Component("resid", layer))
    return out


def check_component(shape: Shape, component: Component | str) -> Component:
    """The component, parsed if a name, refused (ValueError) when the model lacks it."""
    comp = Component.parse(component)
    if comp not in all_components(shape, comp.kind):
        raise ValueError(f"component {comp.name!r} is not in this model ({shape.n_layers} "
                         f"layers, {shape.n_heads} heads"
                         f"{', attention only' if shape.attn_only else ''})")
    return comp


def parse_components(names: Iterable[str | Component], shape: Shape | None = None
                     ) -> list[Component]:
    """Components from names (e.g. 'L1H3,L0.mlp' split by the caller), checked against the
    model when `shape` is given; duplicates are refused."""
    comps = [Component.parse(n) if shape is None else check_component(shape, n) for n in names]
    if len(set(comps)) != len(comps):
        raise ValueError(f"components has duplicates: {[c.name for c in comps]}")
    return comps
