"""The `arithinterp` command: train, eval, localize, probe, zoo, runs, demo, explore, the
studies (finetune, finetune-scenario, multiply, modular), sweep, and llm (info, run).

Every command that writes is a job of stages (`stages.job`) into a run directory; the
command modules only parse flags, check them against the model before a run exists, and
print. Bad input (an unknown option, a value out of range, a missing model) exits with code
2 and one line on stderr that names the problem; no traceback.
"""

from __future__ import annotations

import sys

import typer

from arithinterp.cli import core, llm, studies, sweeps  # noqa: F401  (they register their commands)
from arithinterp.cli.common import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors become one line on stderr and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=argv or ["--help"], prog_name="arithinterp", standalone_mode=False)
    except typer.Abort:
        code = 1
    except typer.TyperException as e:  # click's usage errors (unknown option, bad value)
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        typer.echo(f"error: {message}", err=True)
        code = 2
    sys.exit(code or 0)

