"""Command-line options made from config fields, so that a field is declared once: its type
and default come from the dataclass, its help from the field itself (`fields.described`).
A command lists the fields it offers (`Options`), adds them to its signature
(`with_options`) and takes back the values of those fields (`Options.values`)."""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import typer

from arithinterp.fields import help_of


@dataclass(frozen=True)
class Opt:
    """A field offered under another option name (`flag`, in Python spelling: "model_seed"
    for --model-seed), another type (what the command line takes, a task name say; the
    command then parses it) or another help than its own."""

    field: str
    flag: str | None = None
    type: Any = None
    help: str | None = None


class Options:
    """Fields of one config class as options. Each defaults to its field's default, or, with
    `unset`, to None (not given): then it overrides a base config (a recipe, a file) only
    where given, and `show_default` (all, or these fields) puts the field's default in its
    help. `prefix` starts every help ("LLMs: "). A tuple field is a repeatable option."""

    def __init__(self, cls: type, *opts: str | Opt, unset: bool = False,
                 show_default: bool | Collection[str] = False, prefix: str = "") -> None:
        hints = get_type_hints(cls)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        self.unset = unset
        self.fields: dict[str, str] = {}  # option name -> field name
        self.params: list[inspect.Parameter] = []
        for opt in (Opt(o) if isinstance(o, str) else o for o in opts):
            help_ = opt.help or help_of(cls, opt.field)
            if help_ is None:
                raise TypeError(f"{cls.__name__}.{opt.field} has no help for its option")
            help_ = prefix + (help_[0].lower() + help_[1:] if prefix else help_)
            kind = opt.type or _option_type(hints[opt.field])
            if get_origin(kind) is list:
                help_ += " Repeatable."
            if show_default is True or opt.field in (show_default or ()):
                help_ += f"  [default: {_shown(defaults[opt.field])}]"
            default = None if unset else defaults[opt.field]
            if unset or default is None:
                kind = kind | None
            name = opt.flag or opt.field
            self.fields[name] = opt.field
            self.params.append(inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default,
                annotation=Annotated[kind, typer.Option(help=help_)]))

    def values(self, parsed: dict[str, Any]) -> dict[str, Any]:
        """{field: value} from a command's parsed options (with `unset`, the given ones),
        repeatable options as tuples."""
        out = {}
        for name, field_ in self.fields.items():
            value = parsed[name]
            if self.unset and value in (None, []):
                continue
            out[field_] = tuple(value) if isinstance(value, list) else value
        return out

    def given(self, parsed: dict[str, Any]) -> list[str]:
        """The flags of these options that were given (--other-suite), in their order."""
        return ["--" + name.replace("_", "-") for name, value in
                ((n, parsed[n]) for n in self.fields) if value not in (None, [])]


def with_options(*groups: Options, before: str) -> Callable[[Callable], Callable]:
    """Add the groups' options to a command's signature, before its option `before`; the
    command takes them as keyword arguments (``**parsed``)."""

    def add(command: Callable) -> Callable:
        sig = inspect.signature(command, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        names = [p.name for p in own]
        if before not in names:
            raise TypeError(f"{command.__name__} has no option {before!r}")
        at = names.index(before)
        own = [p.replace(kind=p.KEYWORD_ONLY) if i >= at else p for i, p in enumerate(own)]
        command.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[*own[:at], *(p for g in groups for p in g.params), *own[at:]])
        return command

    return add


def _option_type(hint: Any) -> Any:
    """What the command line takes for a field of type `hint`: the type itself, without
    None; a tuple as a list (of str where its items are Literal choices)."""
    args = get_args(hint)
    if get_origin(hint) in (Union, types.UnionType):
        (hint,) = [a for a in args if a is not type(None)]
        return _option_type(hint)
    if get_origin(hint) is tuple:
        item = args[0]
        return list[str] if get_origin(item) is Literal else list[item]
    return hint


def _shown(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, tuple) else str(value)
