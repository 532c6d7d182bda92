"""Checks of config fields, shared by every config's `__post_init__`: each refuses a bad
value with a ValueError that names the field, says what it accepts and shows what it got
("digits_a must be an integer in 1..9, got 12"). A bool is never an integer or a number.
A field can carry its help (`described`), which the command line shows for its option."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import field, fields
from numbers import Real
from typing import Any

Bound = int | float


def is_int(value: object) -> bool:
    """Whether `value` is an int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: object, *, min: int | None = None, max: int | None = None,
              optional: bool = False, must: str | None = None) -> None:
    """Refuse anything but an integer in min..max (None too, where optional). `must` words
    the accepted values where the bounds' own wording ("a positive integer") is not the one."""
    if optional and value is None:
        return
    if not (is_int(value) and (min is None or value >= min) and (max is None or value <= max)):
        none = "None or " if optional else ""
        raise ValueError(f"{name} must be {none}{must or _integers(min, max)}, got {value!r}")


def check_ints(name: str, values: object, *, min: int | None = None,
               optional: bool = False) -> None:
    """Refuse anything but a non-empty tuple or list of integers >= min (None too, where
    optional)."""
    if optional and values is None:
        return
    if not (isinstance(values, tuple | list) and values
            and all(is_int(v) and (min is None or v >= min) for v in values)):
        none = "None or " if optional else ""
        raise ValueError(f"{name} must be {none}{_integers(min, None, plural=True)}, got "
                         f"{values!r}")


def check_float(name: str, value: object, *, min: Bound | None = None,
                max: Bound | None = None, min_open: bool = False, max_open: bool = False,
                optional: bool = False) -> None:
    """Refuse anything but a real number (not NaN) between min and max, each bound included
    unless open (None too, where optional)."""
    if optional and value is None:
        return
    ok = isinstance(value, Real) and not isinstance(value, bool) and \
        (min is None or (value > min if min_open else value >= min)) and \
        (max is None or (value < max if max_open else value <= max))
    if not ok:
        none = "None or " if optional else ""
        raise ValueError(f"{name} must be {none}{_interval(min, max, min_open, max_open)}, "
                         f"got {value!r}")


def check_bool(name: str, value: object) -> None:
    """Refuse anything but True or False (1 and 0 too)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def check_choice(name: str, value: object, choices: Collection[object]) -> None:
    """Refuse a value that is not one of `choices` (a Literal's arguments, say)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _integers(min: int | None, max: int | None, *, plural: bool = False) -> str:
    word = "integers" if plural else "integer"
    if min is not None and max is not None:
        what = f"{word} in {min}..{max}"
    elif max is not None:
        what = f"{word} <= {max}"
    elif min in (0, 1):
        what = f"{'non-negative' if min == 0 else 'positive'} {word}"
    else:
        what = word if min is None else f"{word} >= {min}"
    return what if plural else f"{'an' if what.startswith('integer') else 'a'} {what}"


def _interval(min: Bound | None, max: Bound | None, min_open: bool, max_open: bool) -> str:
    if min is not None and max is not None:
        return f"in {'(' if min_open else '['}{min}, {max}{')' if max_open else ']'}"
    if min is not None:
        return f"{'>' if min_open else '>='} {min}"
    if max is not None:
        return f"{'<' if max_open else '<='} {max}"
    return "a number"


def described(default: object, help: str) -> Any:
    """A dataclass field with its one-line help, which the command line shows for it:
    ``n_pairs: int = described(256, "Clean/corrupt minimal pairs.")``."""
    return field(default=default, metadata={"help": help})


def help_of(cls: type, name: str) -> str | None:
    """The help of field `name` of dataclass `cls` (None where it has none)."""
    return next((f.metadata.get("help") for f in fields(cls) if f.name == name), None)
