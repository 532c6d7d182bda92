"""Options made from config fields: names, types, defaults and help come from the field; the
parsed values come back as the fields to set."""

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest
import typer
from typer.testing import CliRunner

from arithinterp.cli.options import Opt, Options, with_options
from arithinterp.fields import described


@dataclass(frozen=True)
class Toy:
    steps: int = described(200, "Steps.")
    kind: Literal["a", "b"] = described("a", "Which kind.")
    seeds: tuple[int, ...] = described((0, 1), "Seeds.")
    limit: float | None = described(None, "A limit.")
    quiet: bool = described(False, "Say less.")
    bare: int = 0


def _toy_app(*groups: Options, seen: dict) -> typer.Typer:
    app = typer.Typer(rich_markup_mode=None, add_completion=False)

    @app.command()
    @with_options(*groups, before="last")
    def toy(first: Annotated[int, typer.Option(help="Own option.")] = 1,
            last: Annotated[str, typer.Option(help="Own option.")] = "x",
            **parsed: Any) -> None:
        seen.update(first=first, last=last, **{k: g.values(parsed) for k, g in
                                               zip("abcd", groups, strict=False)})

    @app.command()
    def other() -> None:
        pass

    return app


def test_options_take_name_type_default_and_help_from_the_fields():
    group = Options(Toy, Opt("steps", flag="max_steps"), "kind", "seeds", "limit", "quiet")
    params = {p.name: p for p in group.params}
    assert list(params) == ["max_steps", "kind", "seeds", "limit", "quiet"]
    assert params["max_steps"].default == 200 and params["seeds"].default == (0, 1)
    assert params["limit"].default is None
    help_ = CliRunner().invoke(_toy_app(group, seen={}), ["toy", "--help"],
                               env={"COLUMNS": "200"}).output
    assert "--max-steps" in help_ and "Steps." in help_ and "[default: 200]" in help_
    assert "--kind [a|b]" in help_ or "--kind <a|b>" in help_
    assert "Seeds. Repeatable." in help_ and "--quiet / --no-quiet" in help_
    # the command's own options keep their places around the generated ones
    order = [help_.index(f) for f in ("--first", "--max-steps", "--quiet", "--last")]
    assert order == sorted(order)


def test_values_come_back_as_fields_and_unset_options_only_where_given():
    seen = {}
    app = _toy_app(Options(Toy, "steps", "seeds"), Options(Toy, "kind", "limit", unset=True),
                   seen=seen)
    result = CliRunner().invoke(app, ["toy", "--seeds", "3", "--seeds", "4", "--limit", "0.5"])
    assert result.exit_code == 0, result.output
    assert seen["a"] == {"steps": 200, "seeds": (3, 4)}
    assert seen["b"] == {"limit": 0.5}  # kind not given: the config keeps its own
    assert seen["first"] == 1 and seen["last"] == "x"
    CliRunner().invoke(app, ["toy", "--kind", "c"])  # not a choice: click refuses it
    assert seen["b"] == {"limit": 0.5}


def test_given_flags_show_default_and_prefix():
    group = Options(Toy, "steps", "limit", unset=True, show_default=("steps",), prefix="LLMs: ")
    helps = [p.annotation.__metadata__[0].help for p in group.params]
    assert helps == ["LLMs: steps.  [default: 200]", "LLMs: a limit."]
    assert group.given({"steps": 5, "limit": None}) == ["--steps"]


def test_a_field_without_help_is_refused():
    with pytest.raises(TypeError, match="Toy.bare has no help"):
        Options(Toy, "bare")
    assert Options(Toy, Opt("bare", help="Given here.")).params[0].default == 0


def test_with_options_needs_the_anchor_option():
    def command(a: int = 1, **parsed: Any) -> None:
        pass

    with pytest.raises(TypeError, match="command has no option 'missing'"):
        with_options(Options(Toy, "steps"), before="missing")(command)
    with_options(Options(Toy, "steps"), before="a")(command)
    assert list(inspect.signature(command).parameters) == ["steps", "a"]
