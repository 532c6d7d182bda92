"""Probe targets from task metadata (operand and answer digits, carries, partial products,
running and column sums, Fourier features of modular tasks), each with the first position
whose prefix holds every operand digit it uses, and the problems to probe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int, Real
from torch import Tensor

from arithinterp.probes.fit import ProbeKind
from arithinterp.tasks import Dataset, Task, make_dataset, sample_problems
from arithinterp.tasks.modular import fourier_features

GROUPS: tuple[str, ...] = ("operands", "answer", "carries", "partial_products", "running_sums")
# modular tasks, by name only: cos/sin(2πk·x/p) of a, b or the answer c, e.g. 'cos14_a'
FOURIER_TARGET = re.compile(r"(cos|sin)(\d+)_([abc])")


@dataclass(frozen=True)
class ProbeTarget:
    """A quantity to read from activations: one integer per example."""

    name: str  # 'a1', 'c0', 'carry2', 'n_carries', 'pp_1_2', 'running_sum_3_mod10', ...
    kind: ProbeKind
    values: Real[Tensor, " batch"]  # integers; floats for Fourier targets
    group: str  # one of GROUPS, or 'fourier'
    first_pos: int  # first token position whose prefix holds every operand digit it uses


def _target_specs(spec: Task) -> list[tuple[str, ProbeKind, str, list[int], list[int]]]:
    """(name, kind, group, digits of a used, digits of b used) for every target of the task
    (a modular task: its residues a0, b0 and the answer c0)."""
    if spec.format == "modular":
        return [("a0", "classification", "operands", [0], []),
                ("b0", "classification", "operands", [], [0]),
                ("c0", "classification", "answer", [0], [0])]
    w, da, db = spec.answer_width, spec.digits_a, spec.digits_b
    every = (list(range(da)), list(range(db)))

    def upto(k: int) -> tuple[list[int], list[int]]:
        # A signed difference's digits depend on which operand is larger: on every digit.
        return every if spec.signed else (list(range(min(k, da - 1) + 1)),
                                          list(range(min(k, db - 1) + 1)))

    out: list[tuple[str, ProbeKind, str, list[int], list[int]]] = []
    out += [(f"a{i}", "classification", "operands", [i], []) for i in range(da)]
    out += [(f"b{j}", "classification", "operands", [], [j]) for j in range(db)]
    out += [(f"c{k}", "classification", "answer", *upto(k)) for k in range(w)]
    carry = "borrow" if spec.op == "sub" else "carry"
    out += [(f"{carry}{k}", "classification", "carries", *upto(k - 1)) for k in range(1, w)]
    out.append(("n_borrows" if spec.op == "sub" else "n_carries", "classification", "carries",
                *every))
    if spec.op == "mul":
        out += [(f"pp_{i}_{j}", "regression", "partial_products", [i], [j])
                for i in range(da) for j in range(db)]
        for k in range(w):
            out += [(f"running_sum_{k}", "regression", "running_sums", *upto(k)),
                    (f"running_sum_{k}_mod10", "classification", "running_sums", *upto(k)),
                    (f"running_sum_{k}_div10", "classification", "running_sums", *upto(k))]
    else:  # add / sub: the column sum a_k ± b_k ± carry_in plays the running sum's part
        out += [(f"column_sum_{k}", "regression", "running_sums", *upto(k)) for k in range(w)]
    return out


def target_names(spec: Task, groups: Sequence[str] = GROUPS) -> list[str]:
    """Names of every target the task defines in these groups (constant ones included)."""
    bad = sorted(set(groups) - set(GROUPS))
    if bad:
        raise ValueError(f"unknown target groups {bad}; known: {', '.join(GROUPS)}")
    return [name for name, _, group, _, _ in _target_specs(spec) if group in groups]


def _target_values(data: Dataset, name: str) -> Int[Tensor, " batch"]:
    """Values of a target computed from the dataset's metadata tensors."""
    head, _, rest = name.partition("_")
    if name.startswith(("carry", "borrow")):
        return data.carry_in[:, int(name.removeprefix("carry").removeprefix("borrow"))]
    if name in ("n_carries", "n_borrows"):
        return data.n_carries
    if head == "pp":
        i, j = map(int, rest.split("_"))
        return data.a_digits[:, i] * data.b_digits[:, j]
    if name.startswith(("running_sum_", "column_sum_")):
        parts = name.split("_")
        sums = data.column_sums[:, int(parts[2])]
        if len(parts) == 4:
            return sums % 10 if parts[3] == "mod10" else sums // 10
        return sums
    table = {"a": data.a_digits, "b": data.b_digits, "c": data.answer_digits}[name[0]]
    return table[:, int(name[1:])]


def make_targets(data: Dataset, names: Sequence[str] | None = None) -> list[ProbeTarget]:
    """Probe targets of the dataset's task, by name or group; groups skip constant targets.

    ``names=None`` means every group. Carries are ``carry_in[k]`` (borrows for subtraction;
    for multiplication ``carry_in[k] = c_{k-1} // 10``); ``running_sum_k`` is Bai et al.'s
    c_k (multiplication); addition and subtraction get ``column_sum_k`` instead. A modular
    task has a0, b0 (the residues) and c0 (the answer), and by name the regression targets
    ``cos<k>_a``, ``sin<k>_b``, ``cos<k>_c`` ...: cos/sin(2πk·x/p) (Nanda et al.'s features).
    """
    spec = data.spec
    specs = {s[0]: s for s in _target_specs(spec)}
    names = list(GROUPS) if names is None else list(names)
    if spec.format == "modular":
        specs |= {n: _fourier_spec(spec, n) for n in names if FOURIER_TARGET.fullmatch(n)}
    unknown = [n for n in names if n not in specs and n not in GROUPS]
    if unknown:
        raise ValueError(f"unknown targets {unknown} for task {spec.name}; known: groups "
                         f"{', '.join(GROUPS)} or names {', '.join(specs)}")
    pos = spec.operand_positions()
    out, seen = [], set()
    for requested in names:
        grouped = requested in GROUPS
        members = target_names(spec, [requested]) if grouped else [requested]
        for name in members:
            if name in seen:
                continue
            seen.add(name)
            _, kind, group, used_a, used_b = specs[name]
            values = _fourier_values(data, name) if group == "fourier" \
                else _target_values(data, name).long()
            if grouped and values.unique().numel() < 2:
                continue  # nothing to read out
            first = max([pos["a"][i] for i in used_a] + [pos["b"][j] for j in used_b])
            out.append(ProbeTarget(name, kind, values.clone(), group, first))
    return out


def _fourier_spec(spec: Task, name: str) -> tuple[str, ProbeKind, str, list[int], list[int]]:
    _, k, x = FOURIER_TARGET.fullmatch(name).groups()  # type: ignore[union-attr]
    if not 1 <= int(k) <= spec.radix // 2:
        raise ValueError(f"target {name}: frequency must be in 1..{spec.radix // 2} for "
                         f"{spec.name}, got {k}")
    return name, "regression", "fourier", [0] if x != "b" else [], [0] if x != "a" else []


def _fourier_values(data: Dataset, name: str) -> Tensor:
    fn, k, x = FOURIER_TARGET.fullmatch(name).groups()  # type: ignore[union-attr]
    values = {"a": data.a, "b": data.b, "c": data.answer}[x]
    cos, sin = fourier_features(values, data.spec.radix, int(k))
    return cos if fn == "cos" else sin


def make_probe_dataset(task: Task, n: int, seed: int = 0) -> Dataset:
    """n distinct problems of the task, drawn uniformly with a seed, for probing."""
    a, b = sample_problems(task, n, torch.Generator().manual_seed(seed))
    return make_dataset(task, a, b)
