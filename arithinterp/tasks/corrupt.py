"""Clean/corrupt minimal pairs for patching: same length, one controlled difference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from arithinterp.tasks.data import Dataset, draw_problems, make_dataset
from arithinterp.tasks.modular import Task
from arithinterp.tasks.prompts import TokenPrompts
from arithinterp.tasks.spec import TaskSpec, compute_metadata

MAX_ROUNDS = 50
Prompts = Dataset | TokenPrompts  # what the analyses run on: a task's problems or an LLM's
Partner = Callable[[int, int, torch.Generator], "tuple[int, int] | None"]


@dataclass(frozen=True)
class PromptPairs:
    """Aligned clean and corrupt problems; `change` says what differs ('a_1', 'carry_2').
    The problems are a task's `Dataset`, or an LLM's `TokenPrompts`."""

    clean: Dataset | TokenPrompts
    corrupt: Dataset | TokenPrompts
    change: str

    def __len__(self) -> int:
        return len(self.clean)

    def position_labels(self) -> list[str]:
        return self.clean.position_labels()


def make_digit_pairs(
    spec: Task, n: int, *, operand: Literal["a", "b"], digit: int, seed: int = 0,
    pool: Dataset | None = None,
) -> PromptPairs:
    """Pairs whose operands differ only in digit `digit` (0 = least significant) of `operand`.

    The corrupt digit is drawn uniformly among values that keep the problem valid and change
    the answer (a modular task's operand is one base-p digit: another residue). Clean
    problems are drawn from `pool` (e.g. the model's held-out split) when given, else from
    the whole task.
    """
    _check_digit(spec, operand, digit)

    def partner(a: int, b: int, gen: torch.Generator) -> tuple[int, int] | None:
        return _choose(_digit_options(spec, a, b, operand, digit), gen)

    return _pairs(spec, n, seed, f"{operand}_{digit}", partner, pool)


def corrupt_problem(
    spec: Task, a: int, b: int, *, operand: Literal["a", "b"], digit: int, seed: int = 0
) -> tuple[int, int]:
    """A corrupt partner of problem (a, b): digit `digit` of `operand` replaced (seeded draw
    among the values that keep the problem valid and change the answer), as in
    `make_digit_pairs`. Raises ValueError naming the problem when no such partner exists."""
    _check_digit(spec, operand, digit)
    if not spec.is_valid(a, b):
        raise ValueError(f"({a}, {b}) is not a problem of task {spec.name}")
    twin = _choose(_digit_options(spec, a, b, operand, digit),
                   torch.Generator().manual_seed(seed))
    if twin is None:
        raise ValueError(f"no change of digit {digit} of operand {operand} in "
                         f"{spec.render_prompt(a, b)} keeps the problem valid and changes "
                         "the answer")
    return twin


def _check_digit(spec: Task, operand: str, digit: int) -> None:
    if operand not in ("a", "b"):
        raise ValueError(f"operand must be 'a' or 'b', got {operand!r}")
    width = spec.digits_a if operand == "a" else spec.digits_b
    if not 0 <= digit < width:
        raise ValueError(f"digit must be in 0..{width - 1} for operand {operand} of "
                         f"{spec.name}, got {digit}")


def _digit_options(spec: Task, a: int, b: int, operand: str, digit: int
                   ) -> list[tuple[int, int]]:
    """Problems with digit `digit` of `operand` replaced, still valid, with another answer."""
    x = a if operand == "a" else b
    options = []
    for d in range(spec.radix):
        y = _replace_digit(x, digit, d, spec.radix)
        cand = (y, b) if operand == "a" else (a, y)
        if y != x and spec.is_valid(*cand) and _answer(spec, *cand) != _answer(spec, a, b):
            options.append(cand)
    return options


def make_carry_pairs(spec: TaskSpec, n: int, *, position: int, seed: int = 0,
                     pool: Dataset | None = None) -> PromptPairs:
    """Pairs where the carry (borrow for subtraction) into answer `position` flips.

    Only digit position-1 of one operand changes; carries further up may change with it.
    Clean problems come from `pool` when given (see `make_digit_pairs`).
    """
    if spec.op == "mul":
        raise ValueError("carry pairs are defined for op 'add' and 'sub', not 'mul'; "
                         "use make_digit_pairs")
    top = min(spec.answer_width - 1, max(spec.digits_a, spec.digits_b))
    if not 1 <= position <= top:
        raise ValueError(f"position must be in 1..{top} for {spec.name} (no carry flows into "
                         f"position 0), got {position}")
    k = position - 1

    def partner(a: int, b: int, gen: torch.Generator) -> tuple[int, int] | None:
        carry = compute_metadata(spec, a, b).carry_in[position]
        options = []
        for which, width in (("a", spec.digits_a), ("b", spec.digits_b)):
            if k >= width:
                continue
            for d in range(10):
                cand = ((_replace_digit(a, k, d), b) if which == "a"
                        else (a, _replace_digit(b, k, d)))
                if cand != (a, b) and spec.is_valid(*cand) and \
                        compute_metadata(spec, *cand).carry_in[position] != carry:
                    options.append(cand)
        return _choose(options, gen)

    return _pairs(spec, n, seed, f"carry_{position}", partner, pool)


def _replace_digit(n: int, k: int, d: int, radix: int = 10) -> int:
    return n + (d - (n // radix**k) % radix) * radix**k


def _answer(spec: Task, a: int, b: int) -> int:
    return spec.metadata(a, b).answer


def _choose(options: list, gen: torch.Generator):
    if not options:
        return None
    return options[int(torch.randint(len(options), (1,), generator=gen))]


def _pool_draws(pool: Dataset, gen: torch.Generator):
    """Problems of the pool in a seeded order, once each, as one round of draws."""
    order = torch.randperm(len(pool), generator=gen).tolist()
    a, b = pool.a.tolist(), pool.b.tolist()
    return [(a[i], b[i]) for i in order]


def _pairs(spec: Task, n: int, seed: int, change: str, partner: Partner,
           pool: Dataset | None = None) -> PromptPairs:
    """Draw clean problems (from the pool, if any) and keep those `partner` finds a corrupt
    twin for."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if pool is not None and pool.spec != spec:
        raise ValueError(f"the pool holds problems of {pool.spec.name}, not {spec.name}")
    gen = torch.Generator().manual_seed(seed)
    clean: list[tuple[int, int]] = []
    dirty: list[tuple[int, int]] = []
    for _ in range(1 if pool is not None else MAX_ROUNDS):
        draws = (_pool_draws(pool, gen) if pool is not None
                 else draw_problems(spec, 2 * (n - len(clean)) + 16, gen))
        for a, b in draws:
            twin = partner(a, b, gen)
            if twin is not None:
                clean.append((a, b))
                dirty.append(twin)
                if len(clean) == n:
                    break
        if len(clean) == n:
            break
    else:
        where = f"among the {len(pool)} pool problems" if pool is not None else \
            "(no such pair exists for most problems)"
        raise ValueError(f"could not find {n} pairs changing {change} in task {spec.name}: "
                         f"found {len(clean)} {where}")

    def ds(ps: list[tuple[int, int]]) -> Dataset:
        a, b = zip(*ps, strict=True)
        return make_dataset(spec, torch.tensor(a), torch.tensor(b))

    return PromptPairs(ds(clean), ds(dirty), change)
