"""Minimal pairs: one controlled difference, same length, from a pool when given."""

import pytest
import torch

from arithinterp.tasks import (
    TaskSpec,
    make_carry_pairs,
    make_digit_pairs,
)
from arithinterp.tasks.data import make_test_split
from tests.conftest import BAD_CONFIG


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
@pytest.mark.parametrize("operand, digit", [("a", 0), ("a", 2), ("b", 1)])
def test_digit_pairs_differ_in_exactly_the_requested_digit(op, operand, digit):
    spec = TaskSpec(op=op, digits_a=3, digits_b=3)
    pairs = make_digit_pairs(spec, 40, operand=operand, digit=digit, seed=1)
    assert pairs.change == f"{operand}_{digit}"
    assert pairs.clean.tokens.shape == pairs.corrupt.tokens.shape
    clean = getattr(pairs.clean, f"{operand}_digits")
    dirty = getattr(pairs.corrupt, f"{operand}_digits")
    differs = clean != dirty
    assert differs[:, digit].all() and differs.sum() == len(pairs)
    other = "b" if operand == "a" else "a"
    assert torch.equal(getattr(pairs.clean, other), getattr(pairs.corrupt, other))
    assert (pairs.clean.answer != pairs.corrupt.answer).all()
    prompt_diff = pairs.clean.prompts != pairs.corrupt.prompts
    assert (prompt_diff.sum(dim=1) == 1).all()
    assert prompt_diff[:, spec.operand_positions()[operand][digit]].all()


@pytest.mark.parametrize("op", ["add", "sub"])
@pytest.mark.parametrize("position", [1, 2])
def test_carry_pairs_flip_the_carry_into_the_position(op, position):
    spec = TaskSpec(op=op, digits_a=3, digits_b=3)
    pairs = make_carry_pairs(spec, 30, position=position, seed=2)
    assert (pairs.clean.carry_in[:, position] != pairs.corrupt.carry_in[:, position]).all()
    prompt_diff = pairs.clean.prompts != pairs.corrupt.prompts
    assert (prompt_diff.sum(dim=1) == 1).all()
    ops = spec.operand_positions()
    allowed = {ops["a"][position - 1], ops["b"][position - 1]}
    assert {int(i) for i in prompt_diff.nonzero()[:, 1]} <= allowed


def test_impossible_pairs_raise_clear_errors():
    spec = TaskSpec(digits_a=3, digits_b=3)
    with pytest.raises(ValueError, match="digit must be in 0..2"):
        make_digit_pairs(spec, 4, operand="a", digit=3)
    with pytest.raises(ValueError, match="position must be in 1..3"):
        make_carry_pairs(spec, 4, position=0)
    with pytest.raises(ValueError, match="not 'mul'"):
        make_carry_pairs(TaskSpec(op="mul"), 4, position=1)
    with pytest.raises(ValueError, match="position must be in"):  # no carries in 1-digit sub
        make_carry_pairs(TaskSpec(op="sub", digits_a=1, digits_b=1), 4, position=1)
    with pytest.raises(BAD_CONFIG, match="operand"):
        make_digit_pairs(spec, 4, operand="c", digit=0)


def test_pairs_drawn_from_a_pool_use_only_its_problems():
    spec = TaskSpec(digits_a=2, digits_b=2)
    pool = make_test_split(spec, 60, seed=4)
    pairs = make_digit_pairs(spec, 30, operand="a", digit=1, seed=0, pool=pool)
    members = set(zip(pool.a.tolist(), pool.b.tolist(), strict=True))
    assert set(zip(pairs.clean.a.tolist(), pairs.clean.b.tolist(), strict=True)) <= members
    carry = make_carry_pairs(spec, 5, position=1, seed=0, pool=pool)
    assert set(zip(carry.clean.a.tolist(), carry.clean.b.tolist(), strict=True)) <= members
    with pytest.raises(ValueError, match="found .* among the 60 pool problems"):
        make_digit_pairs(spec, 61, operand="a", digit=1, pool=pool)
    with pytest.raises(ValueError, match="pool holds problems of"):
        make_digit_pairs(TaskSpec(digits_a=2, digits_b=2, format="plain"), 5, operand="a",
                         digit=0, pool=pool)
