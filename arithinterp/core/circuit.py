"""Running a circuit: the model with everything outside it ablated, in one forward pass.

An edge circuit (`run_edges`) keeps a set of the graph's edges: every receiver input reads the
current run's output of each sender whose edge is kept, and the ablated output (the corrupt
run's, a mean, or zeros) of each sender whose edge is not. So each input is the current
residual stream minus, over the dropped edges, (sender's current output − its ablated
output). Heads' queries, keys and values are computed from their own inputs, which the fast
engine (`core.fast`) can do; it covers models built here with learned positions and
Llama-family LLMs. Keeping every edge gives the model's own run; keeping none gives every
receiver its ablated inputs (with "patch", the corrupt run). A node circuit (`run_nodes`)
ablates the outputs of the senders outside it through the hook engine, on any model.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.components import hook_name
from arithinterp.core import fast as fw
from arithinterp.core.engine import capture_activations, run
from arithinterp.core.graph import Edge, Graph, Node
from arithinterp.core.interventions import Intervention, Replace
from arithinterp.models import HookedModel
from arithinterp.weights import NativeWeights

ABLATIONS: tuple[str, ...] = ("patch", "mean", "zero")


def sender_outputs(w: NativeWeights, tokens: Int[Tensor, "batch pos"], graph: Graph
                   ) -> dict[Node, Float[Tensor, "batch pos d_model"]]:
    """What each sender of the graph writes into the residual stream on `tokens`."""
    trace = fw.run_trace(w, tokens)
    out: dict[Node, Tensor] = {}
    for node in graph.nodes:
        if node.kind in ("embed", "pos_embed"):
            out[node] = _embedding(w, node, tokens)
        elif node.kind == "head":
            out[node] = trace.z[node.layer][:, :, node.head] @ w.W_O[node.layer, node.head]
        elif node.kind == "mlp":
            out[node] = trace.mlp_out[node.layer]
    return out


def _embedding(w: NativeWeights, node: Node, tokens: Tensor) -> Tensor:
    """What the token or the position embedding writes: [batch pos d_model]."""
    if node.kind == "embed":
        return w.W_E[tokens]
    return w.W_pos[: tokens.shape[1]].expand(tokens.shape[0], -1, -1)


def ablated_outputs(w: NativeWeights, graph: Graph, ablation: str,
                    tokens: Int[Tensor, "batch pos"], corrupt: Int[Tensor, "batch pos"]
                    ) -> dict[Node, Tensor]:
    """What a dropped edge carries: each sender's output on the corrupt prompts ("patch"),
    its mean over the clean prompts ("mean", [1 pos d_model]) or zeros ("zero")."""
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    if ablation == "patch":
        return sender_outputs(w, corrupt, graph)
    outs = sender_outputs(w, tokens, graph)
    if ablation == "mean":
        return {n: o.mean(0, keepdim=True) for n, o in outs.items()}
    return {n: torch.zeros_like(o[:1]) for n, o in outs.items()}


def _dropped(graph: Graph, keep: Collection[Edge]) -> dict[tuple[Node, str], list[Node]]:
    """Per receiver input: the senders whose edges into it are not kept."""
    unknown = set(keep) - set(graph.edges)
    if unknown:
        raise ValueError(f"{len(unknown)} kept edges are not in the graph, e.g. "
                         f"{sorted(e.name for e in unknown)[:3]}")
    out: dict[tuple[Node, str], list[Node]] = {}
    for edge in graph.edges:
        if edge not in keep:
            out.setdefault((edge.receiver, edge.input), []).append(edge.sender)
    return out


@torch.inference_mode()
def run_edges(w: NativeWeights, tokens: Int[Tensor, "batch pos"], graph: Graph,
              keep: Collection[Edge], ablated: dict[Node, Tensor], *, pos: int = -1
              ) -> Float[Tensor, "batch d_vocab"]:
    """Logits at `pos` of the run on `tokens` in which only the kept edges carry the
    current run's values and every other edge carries `ablated` (see the module docstring)."""
    dropped = _dropped(graph, keep)
    diffs: dict[Node, Tensor] = {}  # sender -> current output - ablated output

    def read(receiver: Node, inp: str, resid: Tensor) -> Tensor:
        senders = dropped.get((receiver, inp), [])
        return resid - sum(diffs[s] for s in senders) if senders else resid

    resid = torch.zeros(())
    for node in graph.nodes:
        if node.kind in ("embed", "pos_embed"):
            out = _embedding(w, node, tokens)
            diffs[node] = out - ablated[node]
            resid = resid + out
    n_layers, n_heads = w.W_Q.shape[:2]
    has_mlp = w.W_in is not None
    for layer in range(n_layers):
        heads = [Node("head", layer, h) for h in range(n_heads)]
        kv_heads = heads[:: w.group]
        q = _project(w, layer, "q", [read(h, "q", resid) for h in heads])
        k = _project(w, layer, "k", [read(h, "k", resid) for h in kv_heads])
        v = _project(w, layer, "v", [read(h, "v", resid) for h in kv_heads])
        if w.rotary is not None:
            q, k = fw.rotate(w, q, 0), fw.rotate(w, k, 0)
        if w.group > 1:
            k, v = k.repeat_interleave(w.group, dim=-2), v.repeat_interleave(w.group, dim=-2)
        z = fw.attend(w, q, k, v, 0)[1]
        per_head = torch.einsum("bphe,hed->hbpd", z, w.W_O[layer])
        for h, node in enumerate(heads):
            diffs[node] = per_head[h] - ablated[node]
        resid = resid + per_head.sum(0) + w.b_O[layer]
        if has_mlp:
            node = Node("mlp", layer)
            out = fw.mlp(w, layer, read(node, "mlp", resid))
            diffs[node] = out - ablated[node]
            resid = resid + out
    return fw.unembed(w, read(Node("logits"), "logits", resid)[:, pos])


def _project(w: NativeWeights, layer: int, which: str, inputs: list[Tensor]) -> Tensor:
    """Queries (keys, values) [batch pos head d_head] of each head from its own input."""
    x = fw.normalize(w, torch.stack(inputs), w.ln1[layer] if w.ln1 else None)
    weight, bias = {"q": (w.W_Q, w.b_Q), "k": (w.W_K, w.b_K), "v": (w.W_V, w.b_V)}[which]
    return torch.einsum("hbpd,hde->bphe", x, weight[layer]) + bias[layer]


def run_nodes(model: HookedModel, tokens: Int[Tensor, "batch pos"],
              corrupt: Int[Tensor, "batch pos"], keep: Collection[Node], graph: Graph
              ) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits of the run on `tokens` with the output of every head and MLP outside `keep`
    patched from the corrupt run (through hooks: any model)."""
    dropped = [n for n in graph.nodes if n.kind in ("head", "mlp") and n not in keep]
    names = {_site(n)[1] for n in dropped}
    with torch.inference_mode():
        donor = capture_activations(model, corrupt, names)
        items = []
        for node in dropped:
            site, name = _site(node)
            value = donor[name][:, :, node.head] if node.kind == "head" else donor[name]
            items.append(Intervention(site, Replace(value), node.layer, head=node.head))
        return run(model, tokens, items).logits


def _site(node: Node) -> tuple[str, str]:
    site = "z" if node.kind == "head" else "mlp_out"
    return site, hook_name(site, node.layer)
