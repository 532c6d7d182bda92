"""Sampling problems (seeded, uniform or balanced by carries), disjoint splits, datasets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from arithinterp.fields import check_choice, check_float
from arithinterp.tasks.modular import Task

Sampling = Literal["uniform", "carries"]
SAMPLINGS: tuple[str, ...] = ("uniform", "carries")
MAX_ENUMERATE = 1_000_000  # problems: up to this many, a draw of most of them enumerates


@dataclass(frozen=True)
class Dataset:
    """Rendered problems of one task with their metadata, all as stacked tensors.

    ``loss_mask[i, t]`` is True where token t is a training target, i.e. where the logits
    at position t - 1 are scored (answer, scratchpad / CoT tokens and <eos>).
    """

    spec: Task
    a: Int[Tensor, " batch"]
    b: Int[Tensor, " batch"]
    tokens: Int[Tensor, "batch pos"]
    loss_mask: Bool[Tensor, "batch pos"]
    answer: Int[Tensor, " batch"]
    answer_digits: Int[Tensor, "batch answer_digit"]  # LSB first, digits of |answer|
    a_digits: Int[Tensor, "batch a_digit"]
    b_digits: Int[Tensor, "batch b_digit"]
    carry_in: Int[Tensor, "batch answer_digit"]  # carry (borrow) into each answer digit
    n_carries: Int[Tensor, " batch"]
    column_sums: Int[Tensor, "batch answer_digit"]  # see ProblemMeta

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def __getitem__(self, idx: slice | Tensor) -> Dataset:
        """The examples at `idx` (a slice or an index tensor), as a new Dataset."""
        fields = {k: v[idx] for k, v in vars(self).items() if isinstance(v, Tensor)}
        return Dataset(spec=self.spec, **fields)

    def position_labels(self) -> list[str]:
        """One label per token position ('a0', '=', 'c1', ...)."""
        return self.spec.position_labels()

    @property
    def prompts(self) -> Int[Tensor, "batch prompt_pos"]:
        """Tokens up to and including '='."""
        return self.tokens[:, : self.spec.prompt_len]


def make_dataset(spec: Task, a: Int[Tensor, " batch"], b: Int[Tensor, " batch"]) -> Dataset:
    """Render problems (a[i], b[i]) of `spec` with their metadata."""
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and of equal length, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    rows, metas = [], []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        if not spec.is_valid(x, y):
            raise ValueError(f"({x}, {y}) is not a problem of task {spec.name}")
        rows.append(spec.vocab.encode(spec.render(x, y), bos=spec.use_bos, eos=spec.use_bos))
        metas.append(spec.metadata(x, y))
    tokens = torch.tensor(rows, dtype=torch.long).reshape(len(rows), spec.seq_len)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, spec.prompt_len :] = True

    def stack(name: str) -> Tensor:
        return torch.tensor([getattr(m, name) for m in metas], dtype=torch.long)

    return Dataset(
        spec=spec, a=a.clone(), b=b.clone(), tokens=tokens, loss_mask=mask,
        answer=stack("answer").reshape(-1), answer_digits=stack("answer_digits").reshape(
            len(metas), spec.answer_width),
        a_digits=stack("a_digits").reshape(len(metas), len(spec.operand_positions()["a"])),
        b_digits=stack("b_digits").reshape(len(metas), len(spec.operand_positions()["b"])),
        carry_in=stack("carry_in").reshape(len(metas), spec.answer_width),
        n_carries=torch.tensor([m.n_carries for m in metas], dtype=torch.long),
        column_sums=stack("column_sums").reshape(len(metas), spec.answer_width),
    )


def with_chain_removed(data: Dataset, removed: int) -> Dataset:
    """The dataset rendered with `removed` chain tokens dropped (format 'cot'): the same as
    `make_dataset` for that spec, by slicing the tokens instead of rendering again."""
    spec = data.spec
    if spec.format != "cot":
        raise ValueError(f"only format 'cot' has a chain to remove, got {spec.name}")
    target = replace(spec, cot_tokens_removed=removed)  # validates removed
    drop = removed - spec.cot_tokens_removed
    if drop < 0:
        raise ValueError(f"cannot put back chain tokens: {spec.cot_tokens_removed} are removed "
                         f"already, {removed} asked")
    p = spec.prompt_len
    fields = {k: v for k, v in vars(data).items() if isinstance(v, Tensor)}
    fields["tokens"] = torch.cat([data.tokens[:, :p], data.tokens[:, p + drop:]], dim=1)
    fields["loss_mask"] = torch.cat([data.loss_mask[:, :p], data.loss_mask[:, p + drop:]],
                                    dim=1)
    return Dataset(spec=target, **fields)


def problem_space_size(spec: Task) -> int:
    """Number of distinct problems of the task (exact, by counting)."""
    return spec.n_problems


def fraction_split(spec: Task, train_fraction: float) -> tuple[int, int]:
    """(n_train, n_test) that put `train_fraction` of all the task's problems in training and
    the rest in the test split (Nanda et al. train on 30% of the p² pairs)."""
    check_float("train_fraction", train_fraction, min=0, max=1, min_open=True, max_open=True)
    space = problem_space_size(spec)
    n_train = round(train_fraction * space)
    if not 0 < n_train < space:
        raise ValueError(f"train_fraction {train_fraction} of the {space} problems of "
                         f"{spec.name} leaves an empty split")
    return n_train, space - n_train


def _draw_operand(spec: Task, which: str, n: int, gen: torch.Generator) -> Tensor:
    low_digits = getattr(spec, f"min_digits_{which}", None)
    if low_digits is None:
        lo, hi = spec.operand_range(which)  # type: ignore[arg-type]
        return torch.randint(lo, hi + 1, (n,), generator=gen)
    top = spec.digits_a if which == "a" else spec.digits_b
    # digit count uniform in low..top, then a value with exactly that many digits
    counts = torch.randint(low_digits, top + 1, (n,), generator=gen)
    lo = torch.where(counts == 1, torch.zeros_like(counts), 10 ** (counts - 1))
    hi = 10**counts
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return (lo + (u * (hi - lo)).long()).clamp(max=hi - 1)


def draw_problems(spec: Task, n: int, gen: torch.Generator) -> list[tuple[int, int]]:
    """Up to n valid problems drawn independently (repeats possible, invalid draws dropped)."""
    xs = _draw_operand(spec, "a", n, gen).tolist()
    ys = _draw_operand(spec, "b", n, gen).tolist()
    return [(x, y) for x, y in zip(xs, ys, strict=True) if spec.is_valid(x, y)]


def sample_problems(
    spec: Task,
    n: int,
    gen: torch.Generator,
    *,
    sampling: Sampling = "uniform",
    exclude: set[tuple[int, int]] | None = None,
) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """n distinct problems not in `exclude`; 'carries' balances the number of carries."""
    check_choice("sampling", sampling, SAMPLINGS)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    exclude = exclude or set()
    space = problem_space_size(spec)
    if n > space - len(exclude):
        raise ValueError(f"asked for {n} distinct problems but task {spec.name} has only "
                         f"{space} ({len(exclude)} of them excluded)")
    if sampling == "uniform" and space <= MAX_ENUMERATE and 2 * n > space - len(exclude):
        return _enumerated(spec, n, gen, exclude)  # most of what is left: no rejection tail
    n_buckets = spec.answer_width  # a problem has 0..answer_width-1 carries
    quota = [n // n_buckets + (1 if i < n % n_buckets else 0) for i in range(n_buckets)]
    seen = set(exclude)
    picked: list[tuple[int, int]] = []
    filled = [0] * n_buckets
    stalls = 0
    while len(picked) < n:
        chunk = max(256, 2 * (n - len(picked)))
        before = len(picked)
        for x, y in draw_problems(spec, chunk, gen):
            if (x, y) in seen:
                continue
            if sampling == "carries":
                k = spec.metadata(x, y).n_carries
                if filled[k] >= quota[k]:
                    continue
                filled[k] += 1
            seen.add((x, y))
            picked.append((x, y))
            if len(picked) == n:
                break
        stalls = stalls + 1 if len(picked) == before else 0
        if stalls > 200:
            short = [k for k in range(n_buckets) if filled[k] < quota[k]]
            raise ValueError(f"could not draw {n} distinct problems of {spec.name} with "
                             f"sampling={sampling!r}: too few with {short} carries")
    a = torch.tensor([p[0] for p in picked], dtype=torch.long)
    b = torch.tensor([p[1] for p in picked], dtype=torch.long)
    if sampling == "carries":  # buckets fill in draw order; shuffle so batches mix them
        perm = torch.randperm(n, generator=gen)
        a, b = a[perm], b[perm]
    return a, b


def _enumerated(spec: Task, n: int, gen: torch.Generator, exclude: set[tuple[int, int]]
                ) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """n problems not in `exclude`, a seeded permutation of all of them (exact and fast when
    n is most of what is left, where rejection sampling waits for the last few)."""
    (la, ha), (lb, hb) = spec.operand_range("a"), spec.operand_range("b")
    pool = [(x, y) for x in range(la, ha + 1) for y in range(lb, hb + 1)
            if spec.is_valid(x, y) and (x, y) not in exclude]
    order = torch.randperm(len(pool), generator=gen)[:n].tolist()
    return (torch.tensor([pool[i][0] for i in order], dtype=torch.long),
            torch.tensor([pool[i][1] for i in order], dtype=torch.long))


def make_test_split(spec: Task, n_test: int, seed: int, *,
                    sampling: Sampling = "uniform") -> Dataset:
    """The test half of make_splits(spec, ..., n_test, seed), without drawing a training set."""
    test_a, test_b = sample_problems(spec, n_test, torch.Generator().manual_seed(seed),
                                     sampling=sampling)
    return make_dataset(spec, test_a, test_b)


def make_splits(
    spec: Task, n_train: int, n_test: int, seed: int, *, sampling: Sampling = "uniform"
) -> tuple[Dataset, Dataset]:
    """Disjoint train and test datasets: no test problem appears in training."""
    gen = torch.Generator().manual_seed(seed)
    # the test set is drawn first, so make_test_split reproduces it alone
    test_a, test_b = sample_problems(spec, n_test, gen, sampling=sampling)
    test_set = set(zip(test_a.tolist(), test_b.tolist(), strict=True))
    train_a, train_b = sample_problems(spec, n_train, gen, sampling=sampling, exclude=test_set)
    return make_dataset(spec, train_a, train_b), make_dataset(spec, test_a, test_b)
