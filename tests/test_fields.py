"""Field checks: what each accepts, and the one-line message of each refusal."""

import math

import numpy as np
import pytest

from arithinterp.fields import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_ints,
    is_int,
)


def test_is_int_refuses_bools_and_floats():
    assert is_int(0) and is_int(-3)
    assert not is_int(True) and not is_int(1.0) and not is_int("1")


@pytest.mark.parametrize("kwargs, value, message", [
    ({}, 1.5, "n must be an integer, got 1.5"),
    ({"min": 1}, 0, "n must be a positive integer, got 0"),
    ({"min": 1}, True, "n must be a positive integer, got True"),
    ({"min": 0}, -1, "n must be a non-negative integer, got -1"),
    ({"min": 10}, 9, "n must be an integer >= 10, got 9"),
    ({"max": 3}, 4, "n must be an integer <= 3, got 4"),
    ({"min": 1, "max": 9}, 12, "n must be an integer in 1..9, got 12"),
    ({"min": 1, "optional": True}, "3", "n must be None or a positive integer, got '3'"),
    ({"min": 1, "must": "an integer >= 1"}, 0, "n must be an integer >= 1, got 0"),
])
def test_check_int_refusals(kwargs, value, message):
    with pytest.raises(ValueError) as e:
        check_int("n", value, **kwargs)
    assert str(e.value) == message


def test_check_int_accepts_the_bounds_and_none_where_optional():
    check_int("n", 1, min=1, max=9)
    check_int("n", 9, min=1, max=9)
    check_int("n", None, min=1, optional=True)
    check_int("n", -7)
    with pytest.raises(ValueError):
        check_int("n", None, min=1)


@pytest.mark.parametrize("kwargs, values, message", [
    ({"min": 1}, (1, 0), "k must be positive integers, got (1, 0)"),
    ({"min": 1}, (), "k must be positive integers, got ()"),
    ({"min": 1}, (1, True), "k must be positive integers, got (1, True)"),
    ({"min": 2}, [1], "k must be integers >= 2, got [1]"),
    ({}, "12", "k must be integers, got '12'"),
    ({"min": 1, "optional": True}, (0,), "k must be None or positive integers, got (0,)"),
])
def test_check_ints_refusals(kwargs, values, message):
    with pytest.raises(ValueError) as e:
        check_ints("k", values, **kwargs)
    assert str(e.value) == message


def test_check_ints_accepts():
    check_ints("k", (1, 2, 3), min=1)
    check_ints("k", [5], min=5)
    check_ints("k", None, optional=True)


@pytest.mark.parametrize("kwargs, value, message", [
    ({"min": 0, "min_open": True}, 0.0, "x must be > 0, got 0.0"),
    ({"min": 0}, -1e-9, "x must be >= 0, got -1e-09"),
    ({"max": 1, "max_open": True}, 1, "x must be < 1, got 1"),
    ({"max": 1}, 2.0, "x must be <= 1, got 2.0"),
    ({"min": 0, "max": 1, "min_open": True, "max_open": True}, 1.0,
     "x must be in (0, 1), got 1.0"),
    ({"min": 0, "max": 1, "min_open": True}, 0, "x must be in (0, 1], got 0"),
    ({"min": 0, "max": 1}, True, "x must be in [0, 1], got True"),
    ({"min": 0, "max": 1}, "0.5", "x must be in [0, 1], got '0.5'"),
    ({"min": 0}, math.nan, "x must be >= 0, got nan"),
    ({"min": 0, "optional": True}, -1.0, "x must be None or >= 0, got -1.0"),
    ({}, None, "x must be a number, got None"),
])
def test_check_float_refusals(kwargs, value, message):
    with pytest.raises(ValueError) as e:
        check_float("x", value, **kwargs)
    assert str(e.value) == message


def test_check_float_accepts_ints_numpy_and_closed_bounds():
    check_float("x", 0, min=0, max=1)
    check_float("x", 1.0, min=0, max=1, min_open=True)
    check_float("x", np.float32(0.5), min=0, max=1, min_open=True, max_open=True)
    check_float("x", None, min=0, optional=True)
    check_float("x", -math.inf)


def test_check_bool_and_check_choice():
    check_bool("flag", False)
    with pytest.raises(ValueError, match="^flag must be true or false, got 1$"):
        check_bool("flag", 1)
    check_choice("op", "add", ("add", "sub"))
    check_choice("norm", None, ("LN", None))
    with pytest.raises(ValueError) as e:
        check_choice("op", "div", ("add", "sub"))
    assert str(e.value) == "op must be one of ['add', 'sub'], got 'div'"


def test_described_fields_carry_their_help():
    from dataclasses import dataclass

    from arithinterp.fields import described, help_of

    @dataclass(frozen=True)
    class Config:
        n: int = described(3, "How many.")
        m: int = 1

    assert Config().n == 3 and Config(n=4).n == 4
    assert help_of(Config, "n") == "How many." and help_of(Config, "m") is None
