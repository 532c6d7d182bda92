"""Arithmetic prompts for pretrained LLMs: which questions, in which template, and the
tokenized prompts the analyses run on.

A `PromptSuite` draws problems (both operands with exactly `digits` digits; subtraction keeps
a >= b) and writes them as text: ``few-shot`` puts `n_shots` solved examples (drawn once from
the suite's seed, the same for every prompt, so prompts of one suite tokenize to equal
lengths when numbers do) before ``a+b=``; ``chat`` asks ``What is a+b?`` as one user turn,
which the model's chat template wraps, with the reply prefilled ``a+b=`` (see
`llm.prompt_text`): in both the next token starts the answer. Tokenization belongs to
the model: `TokenPrompts` holds the result, aligned with the problems.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from arithinterp.fields import check_choice, check_int, described

LLM_OPS = {"+": "add", "-": "sub", "*": "mul"}
TEMPLATES = ("few-shot", "chat")
MAX_DIGITS = 6


@dataclass(frozen=True)
class PromptSuite:
    """Arithmetic questions for an LLM: operation, operand width, template and seed."""

    op: Literal["+", "-", "*"] = described("+", "The operation.")
    digits: int = described(1, f"Digits of each operand (1..{MAX_DIGITS}).")
    template: Literal["few-shot", "chat"] = described(
        "few-shot", "Solved examples then the question, or the model's chat template.")
    n_shots: int = described(3, "Solved examples before the question.")
    seed: int = 0  # draws the few-shot examples

    def __post_init__(self) -> None:
        check_choice("op", self.op, LLM_OPS)
        check_int("digits", self.digits, min=1, max=MAX_DIGITS, must=f"in 1..{MAX_DIGITS}")
        check_choice("template", self.template, TEMPLATES)
        check_int("n_shots", self.n_shots, min=0, max=20)
        if self.template == "few-shot" and self.n_shots == 0:
            raise ValueError("the few-shot template needs n_shots >= 1")

    @property
    def name(self) -> str:
        """'add2-few-shot', 'mul1-chat'."""
        return f"{LLM_OPS[self.op]}{self.digits}-{self.template}"

    @classmethod
    def from_name(cls, name: str, *, n_shots: int = 3) -> PromptSuite:
        """The suite a name like 'add1-few-shot' or 'mul2-chat' stands for."""
        ops = {word: op for op, word in LLM_OPS.items()}
        m = re.fullmatch(rf"({'|'.join(ops)})(\d+)-({'|'.join(TEMPLATES)})", name)
        if m is None:
            raise ValueError(f"suite name {name!r} is not of the form <op><digits>-<template>, "
                             f"e.g. 'add1-few-shot' (ops {list(ops)}, templates "
                             f"{list(TEMPLATES)})")
        return cls(op=ops[m[1]], digits=int(m[2]), template=m[3], n_shots=n_shots)

    @property
    def bounds(self) -> tuple[int, int]:
        """The smallest and largest operand (1 digit: 0..9; k digits: 10^(k-1)..10^k - 1)."""
        return (0 if self.digits == 1 else 10 ** (self.digits - 1)), 10 ** self.digits - 1

    def answer(self, a: int, b: int, op: str | None = None) -> int:
        """The answer of a op b (`op` defaults to the suite's)."""
        op = op or self.op
        return a + b if op == "+" else a - b if op == "-" else a * b

    def valid(self, a: int, b: int) -> bool:
        lo, hi = self.bounds
        return lo <= a <= hi and lo <= b <= hi and (self.op != "-" or a >= b)

    def question(self, a: int, b: int, op: str | None = None) -> str:
        """'12+35=' (`op` replaces the suite's operator)."""
        return f"{a}{op or self.op}{b}="

    def shots(self) -> list[tuple[int, int]]:
        """The solved examples of the few-shot template (fixed by the seed)."""
        return _draw(self, self.n_shots, random.Random(f"shots-{self.seed}"), set())

    def text(self, a: int, b: int, op: str | None = None) -> str:
        """The prompt for (a, b) before any chat template: the solved examples, then the
        question ('12+35=' few-shot; 'What is 12+35?' in a chat, whose reply the model's
        adapter prefills with '12+35='). `op` replaces the question's operator only."""
        lines = [f"{self.question(x, y)}{self.answer(x, y)}" for x, y in self.shots()]
        last = f"What is {a}{op or self.op}{b}?" if self.template == "chat" else \
            self.question(a, b, op)
        return "\n".join([*lines, last])

    def problems(self, n: int, seed: int = 0) -> list[tuple[int, int]]:
        """`n` distinct problems (fewer if the suite has fewer), none of them a shot."""
        check_int("n", n, min=1)
        return _draw(self, n, random.Random(f"problems-{seed}"), set(self.shots()))


def _draw(suite: PromptSuite, n: int, rng: random.Random, exclude: set) -> list[tuple[int, int]]:
    lo, hi = suite.bounds
    space = (hi - lo + 1) ** 2
    out, seen = [], set(exclude)
    for _ in range(50 * n + 100):
        if len(out) == n or len(seen) >= space:
            break
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if suite.op == "-" and a < b:
            a, b = b, a
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


@dataclass(frozen=True)
class TokenPrompts:
    """Prompts of equal token length with the problems they ask and each answer's first token
    (the token the metrics and knockouts score, at the last position)."""

    tokens: Int[Tensor, "batch pos"]
    target: Int[Tensor, " batch"]  # the first token of the correct answer
    problems: tuple[tuple[int, int], ...]
    answers: tuple[int, ...]
    labels: tuple[str, ...]  # one per position: the first prompt's tokens
    texts: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        n, pos = self.tokens.shape
        if not len(self.target) == len(self.problems) == len(self.answers) == n:
            raise ValueError(f"{n} prompts but {len(self.target)} targets, "
                             f"{len(self.problems)} problems, {len(self.answers)} answers")
        if len(self.labels) != pos:
            raise ValueError(f"{pos} positions but {len(self.labels)} labels")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __getitem__(self, idx) -> TokenPrompts:
        rows = range(len(self))[idx] if isinstance(idx, slice) else [int(i) for i in idx]
        return TokenPrompts(self.tokens[list(rows)], self.target[list(rows)],
                            tuple(self.problems[i] for i in rows),
                            tuple(self.answers[i] for i in rows), self.labels,
                            tuple(self.texts[i] for i in rows) if self.texts else ())

    def position_labels(self) -> list[str]:
        return list(self.labels)

    @property
    def a(self) -> Int[Tensor, " batch"]:
        """The first operand of each problem (as a task `Dataset` has it)."""
        return torch.tensor([a for a, _ in self.problems], dtype=torch.long)

    @property
    def b(self) -> Int[Tensor, " batch"]:
        return torch.tensor([b for _, b in self.problems], dtype=torch.long)
