"""What every command shares: the Typer app, the console, option types, turning library
errors into one line on stderr, and table printing."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from arithinterp import schema

app = typer.Typer(
    help="A workbench for arithmetic circuits in transformers: train small models on "
    "addition, subtraction or multiplication, evaluate them, and analyse how they compute.",
    add_completion=False, rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
# outside a terminal (pipes, logs, tests) tables get 160 columns rather than rich's 80
out = Console(width=shutil.get_terminal_size((160, 24)).columns)
Mode = Literal["sft", "cot", "icot", "aux"]


@app.callback()
def _options(
    threads: Annotated[int, typer.Option(
        help="Torch CPU threads. The default 1 is fastest for this package's small models; "
             "more helps only large ones.")] = 1,
) -> None:
    """Global options, applied before any command."""
    import torch
    from threadpoolctl import threadpool_limits

    if threads < 1:
        raise typer.BadParameter(f"must be >= 1, got {threads}", param_hint="--threads")
    torch.set_num_threads(threads)
    # scikit-learn's BLAS too: spinning BLAS threads on a busy machine cost the probes 10x
    threadpool_limits(threads)


USER_ERRORS = (ValueError, OSError)


@contextlib.contextmanager
def user_errors():
    """Turn the library's validation errors into a one-line message and exit code 2."""
    try:
        yield
    except USER_ERRORS as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and e.filename and not str(e).startswith(str(e.filename)):
            msg = f"{e.strerror or msg}: {e.filename}" if e.strerror else msg
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2) from None


Device = Annotated[str, typer.Option(help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
RunsDir = Annotated[Path, typer.Option(help="Where run directories go.")]
RunName = Annotated[str | None, typer.Option(help="Run name (default: a timestamp).")]


def choices(option: str, given: list[str] | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The values of a repeatable option (all of `allowed` when none are given), each checked."""
    if bad := [v for v in given or () if v not in allowed]:
        raise ValueError(f"{option} must be among {', '.join(allowed)}, got {', '.join(bad)}")
    return tuple(given or allowed)


def make_ctx(device: str, progress: bool):
    from arithinterp.models import resolve_device
    from arithinterp.stages.base import Context

    resolve_device(device)  # a bad device name fails before anything is written
    return Context(device=device, progress=progress)


def split_run(path: Path) -> tuple[Path, str]:
    """(runs folder, run name) of a run directory path."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"{path} does not name a run folder")
    return path.parent, path.name


def rich_table(title: str, df) -> Table:
    table = Table(*map(str, df.columns), title=title)
    for row in df.itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return table



def print_finetune(run, key: str) -> None:
    table = run.load(schema.FINETUNE_COMPARISON, key)
    ppl = {"ppl_before": ("ppl_before", "mean"), "ppl_after": ("ppl_after", "mean")} \
        if "ppl_after" in table.columns else {}  # a pretrained LLM's perplexity on text
    summary = (table.groupby(["arm", "role", "task"])
               .agg(n=("change", "size"), exact_after=("exact_after", "mean"),
                    change=("change", "mean"), change_std=("change", "std"), **ppl,
                    params=("n_params", "mean"), seconds=("seconds", "mean"))
               .reset_index())
    out.print(rich_table(f"{key}: held-out exact match after fine-tuning (mean over draws and "
                     "seeds)", summary))


