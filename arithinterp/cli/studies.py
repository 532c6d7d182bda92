"""The study commands: fine-tune chosen components, the multiplication study, the modular
(grokking) analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from arithinterp import schema
from arithinterp.cli.common import (
    Device,
    Progress,
    RunsDir,
    app,
    choices,
    make_ctx,
    out,
    print_finetune,
    rich_table,
    user_errors,
)
from arithinterp.cli.options import Opt, Options, with_options
from arithinterp.finetune import Schedule
from arithinterp.stages.finetune import FinetuneConfig, Selection
from arithinterp.stages.llm_finetune import LLMFinetuneConfig
from arithinterp.stages.modular import ModularConfig
from arithinterp.studies.multiplication import MultiplicationStudy
from arithinterp.studies.selective_finetuning import FinetuneScenario
from arithinterp.tasks import PromptSuite, TaskSpec

SELECT = Options(Selection, Opt("components", type=str), "experiment", "top_k", "threshold",
                 unset=True)
KINDS = Options(Selection, "kinds")
TASKS = Options(FinetuneConfig, Opt("task", type=str),
                Opt("other_tasks", flag="other_task", type=list[str]), unset=True)
SUITES = Options(LLMFinetuneConfig, Opt("suite", type=str),
                 Opt("other_suites", flag="other_suite", type=list[str]), unset=True,
                 prefix="LLMs: ")
SHOTS = Options(PromptSuite, Opt("n_shots", flag="shots"), unset=True, show_default=True,
                prefix="LLMs: ")
TEXT = Options(LLMFinetuneConfig, "text", "window", Opt("n_windows", flag="text_windows"),
               unset=True, show_default=("window", "n_windows"), prefix="LLMs: ")
CONTROLS = Options(FinetuneConfig, "arms", "n_random", "seeds")
SCHEDULE = Options(Schedule, Opt("max_steps", flag="steps",
                                 help="Steps per fine-tune (default 200; LLMs 100)."),
                   Opt("lr", help="Peak learning rate (default 1e-3; LLMs 1e-4)."),
                   Opt("batch_size", help="Problems per step (default 128; LLMs 16)."),
                   unset=True)
SIZES = Options(FinetuneConfig, Opt("n_train", help="Training problems (default 5000; LLMs "
                                    "every problem outside the held-out ones, at most 2000)."),
                Opt("n_eval", help="Held-out problems scored (default 1000; LLMs 50)."),
                unset=True)
NAMING = Options(FinetuneConfig, "rescale", "name")


@app.command("finetune")
@with_options(SELECT, KINDS, TASKS, SUITES, SHOTS, TEXT, CONTROLS, SCHEDULE, SIZES, NAMING,
              before="runs_dir")
def finetune_cmd(
    target: Annotated[str, typer.Argument(help="A run (its model, and its localization for "
                                               "--experiment), a zoo name, a model folder, or "
                                               "a pretrained LLM (llm:smollm2, hf:<folder>).")],
    runs_dir: RunsDir = Path("runs"),
    run_name: Annotated[str | None, typer.Option(
        help="Run to write into when TARGET is a model (default: a timestamp).")] = None,
    device: Device = "auto",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """Fine-tune only chosen components (heads, MLPs) against random components, full
    fine-tuning and none: gain on the target task, forgetting on the others (for a pretrained
    LLM: gain on a prompt suite, forgetting on other suites and perplexity on English text)."""
    from arithinterp.catalog import is_run
    from arithinterp.checkpoints import load_model
    from arithinterp.runs import RunDir
    from arithinterp.stages import finetune, llm_finetune
    from arithinterp.stages.base import Context, run_model
    from arithinterp.stages.job import run_on

    with user_errors():
        ctx = make_ctx(device, progress)
        select = _selection(parsed)
        shared = {**CONTROLS.values(parsed), **NAMING.values(parsed), "select": select}
        choices("--arms", list(shared["arms"]), finetune.ARMS)
        run = RunDir.open(target) if is_run(target) else None
        if not _is_llm(target, run):
            if given := [flag for g in (SUITES, SHOTS, TEXT) for flag in g.given(parsed)]:
                raise ValueError(f"{', '.join(given)}: for pretrained LLMs; {target} is a model "
                                 "trained on a task (use --task, --other-task)")
            tasks = TASKS.values(parsed)
            config = finetune.FinetuneConfig(
                **shared, task=TaskSpec.from_name(tasks["task"]) if "task" in tasks else None,
                other_tasks=tuple(map(TaskSpec.from_name, tasks.get("other_tasks", ()))))
            finetune.check(config := _budget(config, parsed), run, load_model(target))
        else:
            if TASKS.given(parsed):
                raise ValueError("--task, --other-task: for models trained on a task; "
                                 f"{target} is a pretrained LLM (use --suite, --other-suite)")
            suites, shots = SUITES.values(parsed), SHOTS.values(parsed)
            config = llm_finetune.LLMFinetuneConfig(
                **shared, **TEXT.values(parsed),
                suite=PromptSuite.from_name(suites["suite"], **shots) if "suite" in suites
                else None, other_suites=tuple(PromptSuite.from_name(s, **shots)
                                              for s in suites.get("other_suites", ())))
            here = Context(device="cpu", progress=False)
            llm_finetune.check(config := _budget(config, parsed), run,
                               run_model(run, here) if run else _load_llm(target))
        result = run_on(target, [config], runs_dir=runs_dir, name=run_name, ctx=ctx)
    print_finetune(result.run, schema.finetune_key(config.name))
    out.print(f"run written to {result.run.dir}")


def _selection(parsed: dict[str, Any]) -> Selection:
    """The components by name (--components), or the top of an experiment's ranking."""
    given = SELECT.values(parsed)
    if (components := given.pop("components", None)) is None:
        if "threshold" in given:
            given["top_k"] = None  # a threshold replaces the default top K
        return Selection(**given, **KINDS.values(parsed))
    if any(given.values()):
        raise ValueError("give --components or --experiment (with --top-k/--threshold), "
                         "not both")
    if not (names := tuple(c.strip() for c in components.split(",") if c.strip())):
        raise ValueError("--components is empty: name at least one, e.g. L1H3,L0.mlp")
    return Selection(components=names)


def _is_llm(target: str, run) -> bool:
    """Whether TARGET is a pretrained LLM: a source such as llm:smollm2, or a run of one."""
    from arithinterp.pretrained import is_llm_source

    return is_llm_source(target) or (run is not None and run.has(schema.SOURCE, schema.MODEL))


def _load_llm(source: str):
    from arithinterp.pretrained import check_llm_source, load_llm

    check_llm_source(source)
    return load_llm(source)


def _budget(config, parsed: dict[str, Any]):
    """The config with the budget options given (the others keep the config's)."""
    from dataclasses import replace

    return replace(config, **SIZES.values(parsed),
                   schedule=replace(config.schedule, **SCHEDULE.values(parsed)))


SCENARIO_NAME = Options(FinetuneScenario, "name")
SCENARIO = Options(FinetuneScenario, "seeds", "steps", unset=True, show_default=True)


@app.command("finetune-scenario")
@with_options(SCENARIO_NAME, SCENARIO, before="quick")
def finetune_scenario_cmd(
    runs_dir: RunsDir = Path("runs"),
    quick: Annotated[bool, typer.Option(help="A tiny model and budget, for smoke runs.")
                     ] = False,
    device: Device = "auto",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """The selective fine-tuning scenario: a model that adds well and subtracts badly,
    its subtraction heads localized and fine-tuned against random heads, everything and
    nothing: gain on subtraction, forgetting of addition."""
    from dataclasses import replace

    from arithinterp.studies.selective_finetuning import COMPARISON, run_scenario

    with user_errors():
        name = SCENARIO_NAME.values(parsed)["name"]
        scenario = FinetuneScenario.smoke(name) if quick else FinetuneScenario(name=name)
        scenario = replace(scenario, **SCENARIO.values(parsed))
        run = run_scenario(scenario, runs_dir, make_ctx(device, progress))
    print_finetune(run, schema.finetune_key(COMPARISON))
    out.print(f"run written to {run.dir}")


STUDY = Options(MultiplicationStudy, "name", "arms", "seeds", "scale")
STUDY_LOSS = Options(MultiplicationStudy, "aux_weight")


@app.command("multiply")
@with_options(STUDY, before="quick")
@with_options(STUDY_LOSS, before="zoo")
def multiply_cmd(
    runs_dir: RunsDir = Path("runs"),
    quick: Annotated[bool, typer.Option(help="Same as --scale quick.")] = False,
    zoo: Annotated[bool, typer.Option(
        help="Copy the best run of each arm into the zoo as <name>-<arm>.")] = False,
    device: Device = "auto",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """The multiplication study (Bai et al. 2025): train SFT, implicit chain of thought and
    the auxiliary running-sum loss with several seeds, analyse each model, compare them."""
    from arithinterp.studies.multiplication import ARMS, run_study, save_to_zoo

    with user_errors():
        given = {**STUDY.values(parsed), **STUDY_LOSS.values(parsed)}
        choices("--arms", list(given["arms"]), ARMS)
        study = MultiplicationStudy(**{**given, "scale": "quick" if quick else given["scale"]})
        report = run_study(study, runs_dir, make_ctx(device, progress))
        written = save_to_zoo(study, runs_dir) if zoo else []
    comparison = report.load(schema.STUDY_COMPARISON, "study")
    cols = ["arm", "seed", "exact_match"] + [c for c in comparison.columns
                                             if c.startswith(("acc_c", "mae_c"))]
    out.print(rich_table("multiplication: held-out exact match, per-digit accuracy, running-sum "
                     "probe MAE", comparison[cols]))
    out.print(f"report written to {report.dir}")
    if written:
        out.print(f"zoo: {', '.join(written)}")



MODULAR = Options(ModularConfig, Opt("freqs", type=str),
                  Opt("progress", flag="progress_measures"), "probes")


@app.command("modular")
@with_options(MODULAR, before="runs_dir")
def modular_cmd(
    target: Annotated[str, typer.Argument(help="A run of a modular model (analysed in place), "
                                               "a zoo name (modadd-113) or a model folder.")],
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[str | None, typer.Option(
        help="Run to write into when TARGET is a model (default: a timestamp).")] = None,
    device: Device = "auto",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """The Fourier picture of a modular-arithmetic model (Nanda et al. 2023): key
    frequencies, restricted and excluded loss, neurons, progress measures over training."""
    from arithinterp.checkpoints import load_model
    from arithinterp.grokking import check_modular
    from arithinterp.stages.job import run_on

    with user_errors():
        given = MODULAR.values(parsed)
        if (freqs := given["freqs"]) is not None:
            try:
                given["freqs"] = tuple(int(k) for k in freqs.split(",") if k.strip())
            except ValueError:
                raise ValueError(f"--freqs must be integers separated by commas, got "
                                 f"{freqs!r}") from None
        config = ModularConfig(**given)
        check_modular(load_model(target).task)  # before a run exists
        run = run_on(target, [config], runs_dir=runs_dir, name=name,
                     ctx=make_ctx(device, progress)).run
    summary = run.load(schema.MOD_SUMMARY, schema.MODULAR)
    out.print(f"key frequencies: {summary['key_frequencies']} (their share of the logits: "
              f"{summary['key_logit_fraction']:.3f})")
    out.print(rich_table("loss and accuracy of the full, restricted and excluded logits",
                         run.load(schema.MOD_LOSSES, schema.MODULAR)))
    out.print(f"neuron variance explained by the key frequencies: {summary['neuron_fve']:.3f}; "
              f"Gini of W_E's / W_L's Fourier norms: {summary['gini_embedding']:.3f} / "
              f"{summary['gini_neuron_logit']:.3f}")
    out.print(f"memorized (train accuracy >= 0.99) at step {summary['memorized_step']}, "
              f"generalized (test accuracy >= 0.99) at step {summary['generalized_step']}; "
              f"progress measures from {summary['progress_from'] or 'no snapshots'}")
    out.print(f"run written to {run.dir}")
