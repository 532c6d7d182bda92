"""Modular arithmetic: ``a OP b = c`` mod p, one token per residue (Nanda et al. 2023).

A `ModularTask` offers the interface of `TaskSpec` that the data layer, training,
evaluation and the analyses read (name, vocabulary, positions, validity, rendering,
metadata), so every existing tool runs on it. Its vocabulary is its own: the specials,
then the residues ``0 .. p-1`` as tokens, then the operator and ``=`` (existing tasks and
checkpoints are untouched). Layout: Nanda et al.'s ``a b = c`` — 4 tokens, no
``<bos>``/``<eos>`` and no operator token (one model, one operation: the task names it),
the answer c predicted at the ``=`` position. Metadata: a, b, c; `fourier_features` gives
cos/sin(2πk·x/p) for any frequency k.

Operations: ``add`` (a + b), ``sub`` (a − b), ``mul`` (a · b) and ``poly`` (a² + ab + b²),
all mod p.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from arithinterp.fields import check_choice, check_int, is_int
from arithinterp.tasks.spec import ProblemMeta, TaskSpec
from arithinterp.tasks.vocab import SPECIALS, Vocab

ModOp = Literal["add", "sub", "mul", "poly"]
MOD_OPS: tuple[str, ...] = ("add", "sub", "mul", "poly")
MAX_P = 2_000  # the vocabulary grows by p tokens


@dataclass(frozen=True)
class ModularTask:
    """a OP b = c (mod p)."""

    p: int = 113
    op: ModOp = "add"

    format: ClassVar[str] = "modular"
    signed: ClassVar[bool] = False
    cot_tokens_removed: ClassVar[int] = 0
    answer_width: ClassVar[int] = 1
    use_bos: ClassVar[bool] = False
    digits_a: ClassVar[int] = 1  # an operand is one base-p digit
    digits_b: ClassVar[int] = 1

    def __post_init__(self) -> None:
        check_int("p", self.p, min=2, max=MAX_P)
        check_choice("op", self.op, MOD_OPS)

    # ---- names, vocabulary, layout -----------------------------------------------------
    @property
    def name(self) -> str:
        return f"mod{self.p}-{self.op}"

    @classmethod
    def from_name(cls, name: str) -> ModularTask:
        """The task a name like 'mod113-add' stands for."""
        m = re.fullmatch(r"mod(\d+)-(\w+)", name)
        if m is None:
            raise ValueError(f"modular task name {name!r} is not of the form mod<p>-<op>, e.g. "
                             f"'mod113-add' (ops {MOD_OPS})")
        if m[2] not in MOD_OPS:
            raise ValueError(f"op must be one of {MOD_OPS}, got {m[2]!r} in {name!r}")
        return cls(p=int(m[1]), op=m[2])  # type: ignore[arg-type]

    @cached_property
    def vocab(self) -> Vocab:
        """Specials, the residues 0..p-1, '='."""
        return Vocab(SPECIALS + tuple(str(r) for r in range(self.p)) + ("=",))

    @property
    def radix(self) -> int:
        """The base of an operand's digits: one residue is one digit."""
        return self.p

    @property
    def prompt_len(self) -> int:
        return 3  # a b =

    @property
    def seq_len(self) -> int:
        return 4

    @property
    def n_problems(self) -> int:
        return self.p * self.p

    @property
    def max_cot_tokens(self) -> int:
        return 0

    def answer_positions(self) -> list[int]:
        return [3]

    def sign_position(self) -> None:
        return None

    def operand_positions(self) -> dict[str, list[int]]:
        return {"a": [0], "b": [1]}

    def position_labels(self) -> list[str]:
        return ["a", "b", "=", "c"]

    # ---- problems ----------------------------------------------------------------------
    def operand_range(self, which: Literal["a", "b"]) -> tuple[int, int]:
        return 0, self.p - 1

    def is_valid(self, a: int, b: int) -> bool:
        return is_int(a) and is_int(b) and 0 <= a < self.p and 0 <= b < self.p

    def check_problem(self, a: int, b: int) -> None:
        """Refuse (ValueError, naming the operand) what is not a residue pair."""
        for which, value in (("a", a), ("b", b)):
            if not is_int(value):
                raise ValueError(f"operand {which} must be an integer, got {value!r}")
            if not 0 <= value < self.p:
                raise ValueError(f"operand {which}={value} is outside 0..{self.p - 1} for task "
                                 f"{self.name}")

    def answer(self, a: int, b: int) -> int:
        """(a OP b) mod p."""
        self.check_problem(a, b)
        value = {"add": a + b, "sub": a - b, "mul": a * b,
                 "poly": a * a + a * b + b * b}[self.op]
        return value % self.p

    def render_prompt(self, a: int, b: int) -> list[str]:
        self.check_problem(a, b)
        return [str(a), str(b), "="]

    def render(self, a: int, b: int) -> list[str]:
        """The example's tokens (a list: residues are multi-character tokens)."""
        return self.render_prompt(a, b) + [str(self.answer(a, b))]

    def display(self, a: int, b: int) -> str:
        """The example as a person reads it: '5 7 = 12' (tokens apart)."""
        return " ".join(self.render(a, b))

    def display_problem(self, a: int, b: int) -> str:
        """The problem as a person types it: '5 7'."""
        return " ".join(self.render_prompt(a, b)[:-1])

    def example_problem(self) -> tuple[int, int]:
        """A problem of the task to show as an example (largest a, smallest b)."""
        return self.operand_range("a")[1], self.operand_range("b")[0]

    def parse_problem(self, text: str) -> tuple[int, int]:
        """Residues of a typed problem such as '5 7' (any separator, '=' optional): the
        inverse of `display_problem`. Raises ValueError naming what is wrong."""
        m = re.fullmatch(r"\s*(\d+)\D+?(\d+)\s*=?\s*", text)
        if m is None:
            raise ValueError(f"cannot read {text.strip()!r} as a problem: write two residues, "
                             f"e.g. {self.display_problem(*self.example_problem())}")
        a, b = int(m[1]), int(m[2])
        for which, value in (("a", a), ("b", b)):
            if not 0 <= value < self.p:
                raise ValueError(f"operand {which} ({value}) must be in 0..{self.p - 1} for "
                                 f"task {self.name}")
        return a, b

    def metadata(self, a: int, b: int) -> ProblemMeta:
        """a, b and c as one-"digit" operands and answer (no carries)."""
        c = self.answer(a, b)
        return ProblemMeta(a, b, c, (a,), (b,), (c,), (0,), (c,))


def fourier_features(values: Int[Tensor, " batch"], p: int, k: int
                     ) -> tuple[Float[Tensor, " batch"], Float[Tensor, " batch"]]:
    """cos(2πk·x/p) and sin(2πk·x/p) of residues x."""
    angle = 2 * math.pi * k * values.double() / p
    return torch.cos(angle), torch.sin(angle)


Task = TaskSpec | ModularTask  # what the data layer, training and the analyses take
