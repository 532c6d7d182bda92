"""The core commands: train, eval, zoo, runs, localize, probe, demo, explore."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from arithinterp import schema
from arithinterp.analysis.suite import LocalizeConfig
from arithinterp.cli.common import (
    Device,
    Mode,
    Progress,
    RunName,
    RunsDir,
    app,
    make_ctx,
    out,
    print_finetune,
    rich_table,
    split_run,
    user_errors,
)
from arithinterp.cli.llm import print_llm
from arithinterp.cli.options import Opt, Options, with_options
from arithinterp.models import ModelSpec
from arithinterp.probes.sweep import ProbeConfig
from arithinterp.stages.probes import ProbesConfig
from arithinterp.tasks import TaskSpec
from arithinterp.training.config import TrainConfig

TASK = Options(TaskSpec, "op", Opt("digits_a", flag="digits",
                                  help="Digits of both operands (1-9)."), "format", unset=True)
MODEL = Options(ModelSpec, "n_layers", "d_model", "n_heads", unset=True)
TRAINING = Options(TrainConfig, Opt("max_steps", flag="steps"), "batch_size", "lr", "n_train",
                   "n_test", "sampling", "target_accuracy", "seed", unset=True)
MODEL_SEED = Options(ModelSpec, Opt("seed", flag="model_seed"), unset=True)


@app.command("train")
@with_options(TASK, MODEL, TRAINING, MODEL_SEED, before="config")
def train_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to train into (its model/ "
                                                 "folder holds the model and metrics).")],
    recipe: Annotated[str | None, typer.Option(
        help="Start from a zoo recipe (add3-reversed, add3-plain, modadd-113, ...); flags "
             "override it.")] = None,
    task: Annotated[str | None, typer.Option(
        help="A modular task such as mod97-add (sub, mul, poly too): trained with Nanda et "
             "al.'s grokking setup unless --recipe/--config says otherwise.")] = None,
    train_fraction: Annotated[float | None, typer.Option(
        help="Share of all the task's problems to train on, the rest held out (instead of "
             "--n-train/--n-test), e.g. 0.3.")] = None,
    mode: Annotated[Mode | None, typer.Option(
        help="sft: answer only; cot: the full chain of thought; icot: the chain removed step "
             "by step (Deng et al.); aux: sft plus the running-sum loss (Bai et al.).")] = None,
    aux_weight: Annotated[float | None, typer.Option(
        help="λ, the weight of the running-sum loss (mode aux).")] = None,
    config: Annotated[Path | None, typer.Option(
        help=f"A {schema.TRAIN_CONFIG.file} to start from.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an unfinished run.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a run of that name.")] = False,
    device: Device = "auto",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """Train a transformer on an arithmetic task (loss on answer tokens only) into a run."""
    from dataclasses import replace

    from arithinterp.stages.job import run_job
    from arithinterp.tasks import ModularTask
    from arithinterp.tasks.data import fraction_split
    from arithinterp.training.config import with_mode
    from arithinterp.training.recipes import grokking_config, zoo_recipe

    with user_errors():
        if recipe and config:
            raise ValueError("give --recipe or --config, not both")
        if config:
            base = TrainConfig.from_dict(json.loads(config.read_text()))
        elif recipe:
            base = zoo_recipe(recipe)
        elif task:
            base = grokking_config(ModularTask.from_name(task))
        else:
            base = TrainConfig()
        task_kw, top_kw = TASK.values(parsed), TRAINING.values(parsed)
        if task and task_kw:
            raise ValueError("--task names the whole task: drop --op/--digits/--format")
        if "digits_a" in task_kw:
            task_kw["digits_b"] = task_kw["digits_a"]
        the_task = ModularTask.from_name(task) if task else replace(base.task, **task_kw)
        if train_fraction is not None:
            if "n_train" in top_kw or "n_test" in top_kw:
                raise ValueError("give --train-fraction or --n-train/--n-test, not both")
            n_train, n_test = fraction_split(the_task, train_fraction)
            top_kw.update(n_train=n_train, n_test=n_test)
            if base.batch_size == base.n_train and "batch_size" not in top_kw:
                top_kw["batch_size"] = n_train  # full batch stays full batch
            if base.eval_size == base.n_test:
                top_kw["eval_size"] = n_test  # as does scoring the whole test split
        model = replace(base.model, **MODEL.values(parsed), **MODEL_SEED.values(parsed))
        cfg = replace(base, task=the_task, model=model, **top_kw)
        if mode in ("cot", "icot") and task_kw.get("format", "cot") != "cot":
            raise ValueError(f"--mode {mode} trains on the chain of thought: it needs format "
                             f"cot, got --format {task_kw['format']}")
        if mode is not None:
            cfg = with_mode(cfg, mode, aux_weight=aux_weight)
        elif aux_weight is not None:
            raise ValueError("--aux-weight applies to --mode aux")
        root, name = split_run(run_dir)
        result = run_job(root, name, [cfg], ctx=make_ctx(device, progress), overwrite=overwrite,
                         resume=resume)
    summary = result.run.stage_summary("model")
    out.print(f"trained {summary['steps']} steps in {summary['seconds']:.1f} s"
              f"{' (target reached)' if summary['stopped_early'] else ''} ({cfg.mode}); "
              f"held-out exact match {summary['exact_match']:.4f} on {summary['n_test']} "
              f"problems -> {result.run.dir}")


@app.command("eval")
def eval_cmd(
    model: Annotated[str, typer.Argument(help="A zoo name (see `arithinterp zoo`), a run or "
                                              "a model folder.")],
    n: Annotated[int | None, typer.Option(help="Score only the first N held-out problems.")] = None,
    worst: Annotated[int, typer.Option(help="Show this many wrong answers.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    device: Device = "auto",
) -> None:
    """Evaluate a model on its held-out problems: exact match, per digit, by carries."""
    from arithinterp.checkpoints import load_model
    from arithinterp.evaluate import evaluate
    from arithinterp.training.checkpoints import held_out_split

    with user_errors():
        if n is not None and n < 1:
            raise ValueError(f"--n must be >= 1, got {n}")
        loaded = load_model(model, device=device)
        result = evaluate(loaded.model, held_out_split(loaded.path, loaded.task, n))
    if as_json:
        out.print_json(json.dumps(result.summary()))
        return
    out.print(f"{loaded.task.name}: exact match {result.exact_match:.4f} on "
              f"{len(result.examples)} held-out problems")
    out.print("per answer digit (least significant first): "
              + ", ".join(f"{a:.4f}" for a in result.digit_accuracy))
    out.print(rich_table("by number of carries", result.by_carries))
    bad = result.worst(worst)
    if len(bad):
        out.print(rich_table("worst cases", bad[["a", "b", "expected", "generated",
                                                 "n_wrong_digits", "n_carries"]]))


@app.command("zoo")
def zoo_cmd() -> None:
    """List the shipped models with their recorded held-out accuracy."""
    from arithinterp.checkpoints import ZOO_DIR, read_checkpoint_config, zoo_names
    from arithinterp.runs import RunDir

    table = Table("name", "task", "mode", "params", "steps", "exact match", "held-out n")
    for name in zoo_names():
        run = RunDir.open(ZOO_DIR / name)
        ms, task = read_checkpoint_config(run.dir / schema.MODEL)
        m = run.load(schema.TRAIN_FINAL, schema.MODEL) if run.has(
            schema.TRAIN_FINAL, schema.MODEL) else {}
        mode = run.stage_summary(schema.MODEL).get("mode", "?")
        table.add_row(name, task.name,
                      mode, f"{ms.n_layers}L d{ms.d_model} {ms.n_heads}H",
                      str(m.get("steps", "?")), f"{m.get('exact_match', float('nan')):.4f}",
                      str(m.get("n", "?")))
    out.print(table)


@app.command("runs")
def runs_cmd(
    runs_dir: Annotated[Path, typer.Argument(help="Folder of run directories.")] = Path("runs"),
    show_all: Annotated[bool, typer.Option("--all", help="Include unfinished, failed and "
                                                         "unreadable runs, with the reason.")
                        ] = False,
) -> None:
    """List run directories (sound, finished ones unless --all)."""
    from arithinterp.catalog import scan_runs

    with user_errors():
        entries = scan_runs(runs_dir)
    table = Table("run", "status", "created", "stages", "problems", title=f"runs in {runs_dir}")
    for e in entries:
        if not show_all and (e.status != "complete" or e.problems):
            continue
        m = e.run.manifest if e.run else {}
        table.add_row(e.path.name, e.status, m.get("created", "?"),
                      ", ".join(m.get("stages", {})), "; ".join(e.problems))
    out.print(table)
    hidden = sum(1 for e in entries if e.status != "complete" or e.problems)
    if hidden and not show_all:
        out.print(f"{hidden} unfinished, failed or damaged runs not shown (--all shows them)")


LOCALIZE = Options(LocalizeConfig, Opt("n_pairs", flag="pairs"), "corrupt", "operand", "digit",
                   "position", "answer_digit", "metric", "only_correct", "prompts", "top_k",
                   "seed")


@app.command("localize")
@with_options(LOCALIZE, before="add")
def localize_cmd(
    target: Annotated[str, typer.Argument(help="A run directory (its model is used), a zoo name "
                                               "or a model folder.")],
    task: Annotated[str | None, typer.Option(help="Task name such as add3x3-reversed (default: "
                                                  "the model's own).")] = None,
    add: Annotated[bool, typer.Option(
        help="Add the experiment to TARGET (a run) instead of making a new run.")] = False,
    runs_dir: RunsDir = Path("runs"),
    name: RunName = None,
    device: Device = "auto",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """Find the heads, MLPs, positions and paths that carry the answer (writes a run)."""
    from arithinterp.catalog import is_run
    from arithinterp.checkpoints import load_model
    from arithinterp.stages.job import run_job
    from arithinterp.stages.model import ModelSource
    from arithinterp.tasks import TaskSpec

    with user_errors():
        loaded = load_model(target)
        spec = TaskSpec.from_name(task) if task else None
        config = LocalizeConfig(task=spec, **LOCALIZE.values(parsed))
        config.check(loaded.with_task(spec).task if spec else loaded.task)
        ctx = make_ctx(device, progress)
        if add:
            if not is_run(target):
                raise ValueError(f"--add needs a run directory, got {target}")
            root, run_name = split_run(Path(target))
            result = run_job(root, run_name, [config], ctx=ctx, extend=True)
        else:
            result = run_job(runs_dir, name, [ModelSource(target), config], ctx=ctx)
    _print_localization(result.run, config.key)
    out.print(f"run written to {result.run.dir}")


def _print_localization(run, key: str) -> None:

    summary = run.load(schema.LOCALIZE_SUMMARY, key)
    out.print(f"{summary['task']} ({key}): {summary['n_pairs']} pairs changing "
              f"{summary['change']}, metric {summary['metric']} at answer digit "
              f"c{summary['answer_digit']} (clean {summary['clean_metric']:.2f}, corrupted "
              f"{summary['corrupted_metric']:.2f}; clean accuracy "
              f"{summary['clean_accuracy']:.3f})")
    for warning in summary["warnings"]:
        out.print(f"[bold yellow]warning:[/bold yellow] {warning}")
    if run.has(schema.RANKING, key):
        ranked = run.load(schema.RANKING, key)
        out.print(rich_table("top components (normalized patching effect)",
                         ranked[["rank", "component", "effect"]].head(8)))
    if run.has(schema.KNOCKOUT, key):
        knock = run.load(schema.KNOCKOUT, key)
        out.print(rich_table(f"knockout ({knock['method'].iloc[0]} ablation)",
                         knock[["condition", "components", "exact_match", "metric_drop"]]))


PROBES = Options(ProbesConfig, "n", "targets")
PROBE_SEED = Options(ProbeConfig, "seed")


@app.command("probe")
@with_options(PROBES, PROBE_SEED, before="runs_dir")
def probe_cmd(
    target: Annotated[str, typer.Argument(help="A run directory (its model is used), a zoo name "
                                               "or a model folder.")],
    runs_dir: RunsDir = Path("runs"),
    name: RunName = None,
    device: Device = "auto",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """Linear probes (digits, carries, ...) with controls, and the Fourier report (writes a
    run)."""
    from arithinterp.checkpoints import load_model
    from arithinterp.stages.fourier import FourierConfig
    from arithinterp.stages.job import run_job
    from arithinterp.stages.model import ModelSource
    from arithinterp.stages.probes import DIGIT_GROUPS

    with user_errors():
        given, seed = PROBES.values(parsed), PROBE_SEED.values(parsed)["seed"]
        if (n := given["n"]) < 10:
            raise ValueError(f"--n must be >= 10, got {n}")
        probes = ProbesConfig(name="digits" if given["targets"] == DIGIT_GROUPS else "probes",
                              **given, fit=ProbeConfig(seed=seed))
        loaded = load_model(target)
        probes.check(loaded.task)
        result = run_job(runs_dir, name, [ModelSource(target), probes,
                                          FourierConfig(n=n, seed=seed)],
                         ctx=make_ctx(device, progress))
    _print_probes(result.run)
    out.print(f"run written to {result.run.dir}")


def _print_probes(run) -> None:

    for key in run.manifest["stages"]:
        if schema.stage_family(key) != schema.PROBES:
            continue
        summary = run.load(schema.PROBE_SUMMARY, key)
        cols = [c for c in ("target", "metric", "best_score", "best_layer", "best_label",
                            "shuffled", "random_model", "first_layer", "first_label")
                if c in summary.columns]
        out.print(rich_table(f"{key}: best score per target (first layer/position above 0.95)",
                         summary[cols]))
    if run.has(schema.FOURIER_R2, schema.FOURIER):
        r2 = run.load(schema.FOURIER_R2, schema.FOURIER)
        weights = r2[r2["source"].isin(["W_E", "W_U"])][["source", "median_r2"]]
        out.print(rich_table("Fourier: median R² of frequencies {0,1,2,5}", weights))


@app.command("demo")
def demo_cmd(
    model: Annotated[str, typer.Option(help="Zoo name, run or model folder.")] = "add3-reversed",
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[str | None, typer.Option(help="Run name (default: a timestamp); an "
                                                  "unfinished run of that name resumes.")] = None,
    n_eval: Annotated[int | None, typer.Option(help="Held-out problems to score (default: "
                                                    "the model's whole test split).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run of that name.")] = False,
    serve: Annotated[bool, typer.Option("--serve/--no-serve",
                                        help="Open the explorer on the run afterwards.")] = True,
    port: Annotated[int, typer.Option(help="Explorer port.")] = 8501,
    llm: Annotated[bool, typer.Option(
        "--llm", help="Run the pipeline on the embedded LLM (llm:smollm2) instead: 3-shot "
                      "1-digit addition, 32 pairs changing a, knockout of the top 10 heads.")
    ] = False,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """The main job: load the shipped model (training it if absent), evaluate it, localize
    its circuit, write a run, then serve the explorer on it."""
    from arithinterp.stages.job import run_job
    from arithinterp.studies.demo import (
        DEFAULT_MODEL,
        demo_finetune,
        demo_job,
        demo_localize,
        llm_job,
    )

    with user_errors():
        if n_eval is not None and n_eval < 1:
            raise ValueError(f"--n-eval must be >= 1, got {n_eval}")
        job = llm_job() if llm else None
        if job is not None:
            run = run_job(runs_dir, name, job, ctx=make_ctx(device, progress),
                          overwrite=overwrite).run
    if job is not None:
        print_llm(run, job[-1])
        out.print(f"run written to {run.dir}")
        if serve:
            serve_explorer(runs_dir, port=port)
        return
    with user_errors():
        # the shipped adder gets two localization experiments and a fine-tuning comparison
        # (subtraction); another model, whose carries and tasks may differ, one experiment
        shipped = model == DEFAULT_MODEL
        job = demo_job(model, n_eval=n_eval, finetune=demo_finetune() if shipped else None,
                       **({"localize": demo_localize()} if shipped else {}))
        run = run_job(runs_dir, name, job, ctx=make_ctx(device, progress), overwrite=overwrite).run
    summary = run.load(schema.EVAL_SUMMARY, schema.EVALUATE)
    out.print(f"[bold]{model}[/bold]: held-out exact match {summary['exact_match']:.4f} on "
              f"{summary['n']} problems")
    out.print(rich_table("by number of carries", run.load(schema.EVAL_BY_CARRIES, schema.EVALUATE)))
    for key in run.manifest["stages"]:
        if schema.stage_family(key) == schema.LOCALIZE:
            _print_localization(run, key)
    _print_probes(run)
    for key in run.manifest["stages"]:
        if schema.stage_family(key) == schema.FINETUNE:
            print_finetune(run, key)
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

    app_file = Path(__file__).resolve().parents[2] / "apps" / "explorer.py"
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

