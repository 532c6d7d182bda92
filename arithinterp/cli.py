"""The `arithinterp` command: train, eval, localize, probe, zoo, runs, demo, explore.

Bad input (an unknown option, a value out of range, a missing model) exits with code 2 and
one line on stderr that names the problem; no traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from arithinterp.tasks.data import Sampling
from arithinterp.tasks.spec import Format, Op

app = typer.Typer(
    help="A workbench for arithmetic circuits in transformers: train small models on "
    "addition, subtraction or multiplication, evaluate them, and analyse how they compute.",
    add_completion=False, rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
out = Console()


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
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


@contextlib.contextmanager
def user_errors():
    """Turn the library's validation errors into a one-line message and exit code 2."""
    try:
        yield
    except USER_ERRORS as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2) from None


Device = Annotated[str, typer.Option(help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


@app.command("train")
def train_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the model, metrics, checkpoints.")],
    recipe: Annotated[str | None, typer.Option(
        help="Start from a zoo recipe (add3-reversed, add3-plain); flags override it.")] = None,
    op: Annotated[Op | None, typer.Option(help="add, sub or mul.")] = None,
    digits: Annotated[int | None, typer.Option(help="Digits of both operands (1-9).")] = None,
    format: Annotated[Format | None, typer.Option(help="plain, reversed, scratchpad, cot.")] = None,
    n_layers: Annotated[int | None, typer.Option(help="Transformer layers.")] = None,
    d_model: Annotated[int | None, typer.Option(help="Residual stream width.")] = None,
    n_heads: Annotated[int | None, typer.Option(help="Attention heads per layer.")] = None,
    steps: Annotated[int | None, typer.Option(help="Maximum optimizer steps.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Problems per step.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (AdamW).")] = None,
    n_train: Annotated[int | None, typer.Option(help="Distinct training problems.")] = None,
    n_test: Annotated[int | None, typer.Option(help="Held-out problems (never trained).")] = None,
    sampling: Annotated[Sampling | None, typer.Option(help="uniform or carries (balanced by "
                                                           "number of carries).")] = None,
    target_accuracy: Annotated[float | None, typer.Option(help="Stop when held-out exact match "
                                                               "reaches this.")] = None,
    seed: Annotated[int | None, typer.Option(help="Data seed.")] = None,
    model_seed: Annotated[int | None, typer.Option(help="Weight-initialisation seed.")] = None,
    config: Annotated[Path | None, typer.Option(help="A train_config.json to start from.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT_DIR's checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished OUT_DIR.")] = False,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """Train a transformer on an arithmetic task (loss on answer tokens only)."""
    from dataclasses import replace

    from arithinterp.train import TrainConfig, train, zoo_recipe

    with user_errors():
        if recipe and config:
            raise ValueError("give --recipe or --config, not both")
        if config:
            base = TrainConfig.from_dict(json.loads(config.read_text()))
        elif recipe:
            base = zoo_recipe(recipe)
        else:
            base = TrainConfig()
        task_kw = {k: v for k, v in {"op": op, "format": format, "digits_a": digits,
                                     "digits_b": digits}.items() if v is not None}
        model_kw = {k: v for k, v in {"n_layers": n_layers, "d_model": d_model,
                                      "n_heads": n_heads, "seed": model_seed}.items()
                    if v is not None}
        top_kw = {k: v for k, v in {"max_steps": steps, "batch_size": batch_size, "lr": lr,
                                    "n_train": n_train, "n_test": n_test, "sampling": sampling,
                                    "target_accuracy": target_accuracy, "seed": seed}.items()
                  if v is not None}
        cfg = replace(base, task=replace(base.task, **task_kw),
                      model=replace(base.model, **model_kw), **top_kw)
        result = train(cfg, out_dir, resume=resume, overwrite=overwrite, device=device,
                       progress=progress)
    out.print(f"trained {result.steps} steps in {result.seconds:.1f} s"
              f"{' (target reached)' if result.stopped_early else ''}; held-out exact match "
              f"{result.final['exact_match']:.4f} on {result.final['n']} problems -> {result.path}")


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Argument(help="A zoo name (see `arithinterp zoo`) or a model "
                                              "folder.")],
    n: Annotated[int | None, typer.Option(help="Score only the first N held-out problems.")] = None,
    worst: Annotated[int, typer.Option(help="Show this many wrong answers.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    device: Device = "auto",
) -> None:
    """Evaluate a model on its held-out problems: exact match, per digit, by carries."""
    from arithinterp.evaluate import evaluate
    from arithinterp.models import load_model, resolve_model_path
    from arithinterp.pipeline import held_out_split

    with user_errors():
        if n is not None and n < 1:
            raise ValueError(f"--n must be >= 1, got {n}")
        path = resolve_model_path(model)
        loaded = load_model(path, device=device)
        result = evaluate(loaded.model, held_out_split(path, loaded, n))
    if as_json:
        out.print_json(json.dumps(result.summary()))
        return
    out.print(f"{loaded.task.name}: exact match {result.exact_match:.4f} on "
              f"{len(result.examples)} held-out problems")
    out.print("per answer digit (least significant first): "
              + ", ".join(f"{a:.4f}" for a in result.digit_accuracy))
    out.print(_table("by number of carries", result.by_carries))
    bad = result.worst(worst)
    if len(bad):
        out.print(_table("worst cases", bad[["a", "b", "expected", "generated", "n_wrong_digits",
                                             "n_carries"]]))


@app.command("zoo")
def zoo_cmd() -> None:
    """List the shipped models with their recorded held-out accuracy."""
    from arithinterp.models import ZOO_DIR, zoo_names

    table = Table("name", "task", "params", "steps", "exact match", "held-out n")
    for name in zoo_names():
        cfg = json.loads((ZOO_DIR / name / "config.json").read_text())
        metrics_file = ZOO_DIR / name / "metrics.json"
        m = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        ms, task = cfg["model"], cfg["task"]
        table.add_row(name, f"{task['op']} {task['digits_a']}x{task['digits_b']} {task['format']}",
                      f"{ms['n_layers']}L d{ms['d_model']} {ms['n_heads']}H",
                      str(m.get("steps", "?")), f"{m.get('exact_match', float('nan')):.4f}",
                      str(m.get("n", "?")))
    out.print(table)


@app.command("runs")
def runs_cmd(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of run directories.")] = Path("runs"),
    show_all: Annotated[bool, typer.Option("--all", help="Include unfinished runs.")] = False,
) -> None:
    """List run directories (finished ones unless --all)."""
    from arithinterp.runs import list_runs

    table = Table("run", "status", "created", "stages")
    for run in list_runs(runs_dir, include_incomplete=show_all):
        m = run.manifest
        table.add_row(str(run.dir), m["status"], m["created"], ", ".join(m["stages"]))
    out.print(table)


@app.command("localize")
def localize_cmd(
    target: Annotated[str, typer.Argument(help="A run directory (its model is used), a zoo name "
                                               "or a model folder.")],
    task: Annotated[str | None, typer.Option(help="Task name such as add3x3-reversed (default: "
                                                  "the model's own).")] = None,
    pairs: Annotated[int, typer.Option(help="Clean/corrupt minimal pairs.")] = 256,
    corrupt: Annotated[Literal["digit", "carry"], typer.Option(
        help="digit: change one operand digit; carry: flip the carry into --position.")] = "digit",
    operand: Annotated[Literal["a", "b"], typer.Option(
        help="Operand whose digit changes.")] = "a",
    digit: Annotated[int, typer.Option(help="Which digit of it (0 = least significant).")] = 1,
    position: Annotated[int, typer.Option(help="Answer position whose carry flips.")] = 1,
    answer_digit: Annotated[int | None, typer.Option(
        help="Answer digit the metric reads (default: the one that changes).")] = None,
    metric: Annotated[Literal["logit_diff", "prob", "logprob"], typer.Option(
        help="What to measure at the answer digit.")] = "logit_diff",
    top_k: Annotated[int, typer.Option(help="Components to knock out together.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed for pairs and random draws.")] = 0,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(help="Run name (default: a timestamp).")] = None,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """Find the heads, MLPs, positions and paths that carry the answer (writes a run)."""
    from arithinterp.analysis.suite import LocalizeConfig
    from arithinterp.pipeline import run_localize
    from arithinterp.tasks import TaskSpec

    with user_errors():
        config = LocalizeConfig(n_pairs=pairs, corrupt=corrupt, operand=operand, digit=digit,
                                position=position, answer_digit=answer_digit, metric=metric,
                                top_k=top_k, seed=seed)
        run = run_localize(target, config, runs_dir, name=name, device=device, progress=progress,
                           task=TaskSpec.from_name(task) if task else None)
    _print_localization(run)
    out.print(f"run written to {run.dir}")


def _print_localization(run) -> None:
    summary = run.load_json("localize/summary.json")
    out.print(f"{summary['task']}: {summary['n_pairs']} pairs changing {summary['change']}, "
              f"metric {summary['metric']} (clean {summary['clean_metric']:.2f}, corrupted "
              f"{summary['corrupted_metric']:.2f})")
    ranked = run.load_table("localize/ranking.parquet")
    out.print(_table("top components (normalized patching effect)",
                     ranked[["rank", "component", "effect"]].head(8)))
    knock = run.load_table("localize/knockout.parquet")
    out.print(_table(f"knockout ({knock['method'].iloc[0]} ablation)",
                     knock[["condition", "components", "exact_match", "metric_drop"]]))


@app.command("probe")
def probe_cmd(
    target: Annotated[str, typer.Argument(help="A run directory (its model is used), a zoo name "
                                               "or a model folder.")],
    n: Annotated[int, typer.Option(help="Fresh problems to probe.")] = 2000,
    targets: Annotated[list[str] | None, typer.Option(
        help="Target groups or names (repeatable): operands, answer, carries, "
             "partial_products, running_sums, or a0, carry2, ...")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the problems and the split.")] = 0,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(help="Run name (default: a timestamp).")] = None,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """Linear probes (digits, carries, ...) with controls, and the Fourier report (writes a
    run)."""
    from arithinterp.pipeline import DIGIT_GROUPS, run_probe

    with user_errors():
        if n < 10:
            raise ValueError(f"--n must be >= 10, got {n}")
        run = run_probe(target, runs_dir, name=name, n=n, seed=seed, device=device,
                        groups=tuple(targets) if targets else DIGIT_GROUPS, progress=progress)
    _print_probes(run)
    out.print(f"run written to {run.dir}")


def _print_probes(run) -> None:
    key = "digits" if run.manifest["stages"]["probes"]["summary"].get("digits") else "probes"
    summary = run.load_table(f"probes/{key}_summary.parquet")
    cols = [c for c in ("target", "metric", "best_score", "best_layer", "best_label",
                        "shuffled", "random_model", "first_layer", "first_label")
            if c in summary.columns]
    out.print(_table("probes: best score per target (first layer/position above 0.95)",
                     summary[cols]))
    r2 = run.load_table("fourier/r2.parquet")
    weights = r2[r2["source"].isin(["W_E", "W_U"])][["source", "median_r2"]]
    out.print(_table("Fourier: median R² of frequencies {0,1,2,5}", weights))


@app.command("demo")
def demo_cmd(
    model: Annotated[str, typer.Option(help="Zoo name or model folder.")] = "add3-reversed",
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(help="Run name (default: a timestamp); an "
                                                  "unfinished run of that name resumes.")] = None,
    n_eval: Annotated[int | None, typer.Option(help="Held-out problems to score (default: "
                                                    "the model's whole test split).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run of that name.")] = False,
    serve: Annotated[bool, typer.Option("--serve/--no-serve",
                                        help="Open the explorer on the run afterwards.")] = True,
    port: Annotated[int, typer.Option(help="Explorer port.")] = 8501,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """The main job: load the shipped model (training it if absent), evaluate it, localize
    its circuit, write a run, then serve the explorer on it."""
    from arithinterp.pipeline import DemoConfig, run_demo

    with user_errors():
        run = run_demo(DemoConfig(model=model, n_eval=n_eval, device=device), runs_dir,
                       name=name, overwrite=overwrite, progress=progress)
    summary = run.load_json("evaluate/summary.json")
    out.print(f"[bold]{model}[/bold]: held-out exact match {summary['exact_match']:.4f} on "
              f"{summary['n']} problems")
    out.print(_table("by number of carries", run.load_table("evaluate/by_carries.parquet")))
    if run.stage_done("localize"):
        _print_localization(run)
    if run.stage_done("probes"):
        _print_probes(run)
    out.print(f"run written to {run.dir}")
    out.print(f"explore it: arithinterp explore {runs_dir}   (or: make explore)")
    if serve:
        serve_explorer(runs_dir, port=port)


@app.command("explore")
def explore_cmd(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of run directories.")] = Path("runs"),
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve the Streamlit explorer on the runs in RUNS_DIR (Ctrl-C stops it)."""
    with user_errors():
        serve_explorer(runs_dir, port=port, address=address)


def serve_explorer(runs_dir: Path, *, port: int = 8501, address: str = "127.0.0.1") -> None:
    """Run `streamlit run apps/explorer.py` from the source checkout until interrupted."""
    import subprocess

    app_file = Path(__file__).resolve().parents[1] / "apps" / "explorer.py"
    if not app_file.is_file():
        raise FileNotFoundError(f"the explorer ({app_file}) ships with the source checkout; "
                                "install arithinterp from it (pip install -e .)")
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {port}")
    out.print(f"explorer: http://{address}:{port}  (Ctrl-C stops it)")
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.call([sys.executable, "-m", "streamlit", "run", str(app_file),
                         "--server.headless=true", f"--server.address={address}",
                         f"--server.port={port}", "--browser.gatherUsageStats=false",
                         "--", "--runs-dir", str(runs_dir)])


def _table(title: str, df) -> Table:
    table = Table(*map(str, df.columns), title=title)
    for row in df.itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return table


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
