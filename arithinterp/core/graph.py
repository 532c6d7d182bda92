"""The computational graph of a model as data: nodes, the edges between a sender's output and
a receiver's input, scores from any method, and pruning — kept apart from how scores are made
(`analysis`) and from how a circuit is run (`core.circuit`).

Senders are the token embedding, the position embedding (models with learned positions), every
head's output and every MLP's output; receivers are every head's query, key and value input,
every MLP's input and the logits (the unembedding's input). A sender feeds every receiver
after it: a head of layer L feeds the MLP of layer L and everything of later layers; an MLP of
layer L feeds later layers and the logits. Under grouped-query attention a key or value edge
enters the key/value head shared by a group of query heads: its receiver is named after the
group's first query head (``L1H0.k`` feeds heads 0 and 1 when two share keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from arithinterp.components import Component
from arithinterp.fields import check_int

NodeKind = Literal["embed", "pos_embed", "head", "mlp", "logits"]
Input = Literal["q", "k", "v", "mlp", "logits"]


@dataclass(frozen=True)
class Node:
    """A sender or receiver: an embedding, a head, an MLP or the logits."""

    kind: NodeKind
    layer: int | None = None
    head: int | None = None

    @property
    def name(self) -> str:
        """'embed', 'pos_embed', 'logits', or the component's name ('L1H3', 'L0.mlp')."""
        if self.kind in ("head", "mlp"):
            return Component(self.kind, self.layer, self.head).name
        return self.kind

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Edge:
    """A sender's output read by one input of a receiver."""

    sender: Node
    receiver: Node
    input: Input

    @property
    def name(self) -> str:
        """'L0H1->L1H2.q', 'L0.mlp->L1.mlp', 'embed->logits'."""
        suffix = f".{self.input}" if self.receiver.kind == "head" else ""
        return f"{self.sender.name}->{self.receiver.name}{suffix}"


@dataclass
class Graph:
    """Nodes in forward order, edges, and per-method scores of edges [edge] and nodes [node]."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    group: int = 1  # query heads per key/value head
    edge_scores: dict[str, Float[Tensor, " edge"]] = field(default_factory=dict)
    node_scores: dict[str, Float[Tensor, " node"]] = field(default_factory=dict)

    def add_scores(self, method: str, *, edges: Tensor | None = None,
                   nodes: Tensor | None = None) -> None:
        """Store one method's scores (one per edge, and/or one per node), checked finite and
        of the graph's size."""
        for what, values, n, store in (("edges", edges, len(self.edges), self.edge_scores),
                                       ("nodes", nodes, len(self.nodes), self.node_scores)):
            if values is None:
                continue
            if values.shape != (n,):
                raise ValueError(f"{method}: {what} scores must have shape ({n},), got "
                                 f"{tuple(values.shape)}")
            if not torch.isfinite(values).all():
                raise ValueError(f"{method}: {what} scores have NaN or infinite values")
            store[method] = values.detach().double().cpu()

    def _scores(self, method: str) -> Tensor:
        if method not in self.edge_scores:
            raise ValueError(f"no edge scores from {method!r}; scored: "
                             f"{sorted(self.edge_scores) or 'none'}")
        return self.edge_scores[method]

    def top_n(self, method: str, n: int) -> frozenset[Edge]:
        """The n edges of largest |score| (ties in the graph's order)."""
        check_int("n", n, min=0, max=len(self.edges))
        order = torch.argsort(self._scores(method).abs(), descending=True, stable=True)
        return frozenset(self.edges[i] for i in order[:n].tolist())

    def threshold(self, method: str, t: float) -> frozenset[Edge]:
        """The edges with |score| >= t."""
        if not t >= 0:
            raise ValueError(f"t must be >= 0 (it bounds |score|), got {t!r}")
        keep = (self._scores(method).abs() >= t).nonzero().flatten().tolist()
        return frozenset(self.edges[i] for i in keep)

    def to_frame(self) -> pd.DataFrame:
        """One row per edge: edge, sender, receiver, input, and a column per method."""
        frame = pd.DataFrame({"edge": [e.name for e in self.edges],
                              "sender": [e.sender.name for e in self.edges],
                              "receiver": [e.receiver.name for e in self.edges],
                              "input": [e.input for e in self.edges]})
        for method, scores in self.edge_scores.items():
            frame[method] = scores.numpy()
        return frame


def build_graph(n_layers: int, n_heads: int, *, attn_only: bool = False,
                pos_embed: bool = True, n_kv_heads: int | None = None) -> Graph:
    """The graph of a model of this shape (see the module docstring)."""
    n_kv = n_heads if n_kv_heads is None else n_kv_heads
    if n_kv < 1 or n_heads % n_kv:
        raise ValueError(f"n_kv_heads must divide n_heads={n_heads}, got {n_kv_heads}")
    group = n_heads // n_kv
    senders = [Node("embed")] + ([Node("pos_embed")] if pos_embed else [])
    nodes = list(senders)
    edges: list[Edge] = []
    for layer in range(n_layers):
        heads = [Node("head", layer, h) for h in range(n_heads)]
        for head in heads:
            for inp in ("q", "k", "v"):
                if inp != "q" and head.head % group:
                    continue  # one key/value receiver per shared key/value head
                edges += [Edge(s, head, inp) for s in senders]
        nodes += heads
        senders += heads
        if not attn_only:
            mlp = Node("mlp", layer)
            edges += [Edge(s, mlp, "mlp") for s in senders]
            nodes.append(mlp)
            senders.append(mlp)
    logits = Node("logits")
    edges += [Edge(s, logits, "logits") for s in senders]
    return Graph(tuple(nodes + [logits]), tuple(edges), group)
