"""The study commands: fine-tune chosen components, the multiplication study, the modular
(grokking) analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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


@app.command("finetune")
def finetune_cmd(
    target: Annotated[str, typer.Argument(help="A run (its model, and its localization for "
                                               "--experiment), a zoo name, a model folder, or "
                                               "a pretrained LLM (llm:smollm2, hf:<folder>).")],
    components: Annotated[str | None, typer.Option(
        help="Components to fine-tune, by name: L1H3,L0.mlp (instead of --experiment).")] = None,
    experiment: Annotated[str | None, typer.Option(
        help="Select from this localization experiment of the run (e.g. a1, or an llm run's "
             "add1-few-shot-a0).")] = None,
    top_k: Annotated[int | None, typer.Option(help="The top K ranked components.")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Every component with |normalized effect| >= this (instead of --top-k).")] = None,
    kinds: Annotated[list[str] | None, typer.Option(
        help="Kinds to select (repeatable): head, mlp, attn (default: head).")] = None,
    task: Annotated[str | None, typer.Option(
        help="Target task such as add3x3-plain (default: the model's own).")] = None,
    other_task: Annotated[list[str] | None, typer.Option(
        help="Tasks forgetting is measured on (repeatable).")] = None,
    suite: Annotated[str | None, typer.Option(
        help="LLMs: the target prompt suite, e.g. add1-few-shot, mul2-chat (default: the "
             "suite of --experiment, else add1-few-shot).")] = None,
    other_suite: Annotated[list[str] | None, typer.Option(
        help="LLMs: suites forgetting of other arithmetic is measured on (repeatable).")
    ] = None,
    shots: Annotated[int | None, typer.Option(
        help="LLMs: solved examples in the named suites' prompts (default 3).")] = None,
    text: Annotated[str | None, typer.Option(
        help="LLMs: a UTF-8 text file for the perplexity (default: CPython's pydoc topics).")
    ] = None,
    window: Annotated[int | None, typer.Option(
        help="LLMs: tokens per perplexity window (default 128).")] = None,
    text_windows: Annotated[int | None, typer.Option(
        help="LLMs: perplexity windows, a seeded selection (default 32).")] = None,
    arms: Annotated[list[str] | None, typer.Option(
        help="Arms (repeatable): selected, random, full, none (default: all).")] = None,
    n_random: Annotated[int, typer.Option(help="Random component sets (distinct).")] = 3,
    seeds: Annotated[list[int] | None, typer.Option(help="Seeds (repeatable; default 0).")
                     ] = None,
    steps: Annotated[int | None, typer.Option(
        help="Steps per fine-tune (default 200; LLMs 100).")] = None,
    lr: Annotated[float | None, typer.Option(
        help="Peak learning rate (default 1e-3; LLMs 1e-4).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Problems per step (default 128; LLMs 16).")] = None,
    n_train: Annotated[int | None, typer.Option(
        help="Training problems (default 5000; LLMs every problem outside the held-out ones, "
             "at most 2000).")] = None,
    n_eval: Annotated[int | None, typer.Option(
        help="Held-out problems scored (default 1000; LLMs 50).")] = None,
    rescale: Annotated[bool, typer.Option(
        help="Multiply the selected heads' gradients by H/h (Zhang et al.).")] = False,
    name: Annotated[str, typer.Option(help="The comparison's name: finetune/<name>.")] = "ft",
    runs_dir: RunsDir = Path("runs"),
    run_name: Annotated[str | None, typer.Option(
        help="Run to write into when TARGET is a model (default: a timestamp).")] = None,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """Fine-tune only chosen components (heads, MLPs) against random components, full
    fine-tuning and none: gain on the target task, forgetting on the others (for a pretrained
    LLM: gain on a prompt suite, forgetting on other suites and perplexity on English text)."""
    from dataclasses import replace

    from arithinterp.models import load_model
    from arithinterp.runs import RunDir, is_run
    from arithinterp.stages import finetune, llm_finetune
    from arithinterp.stages.base import Context, run_model
    from arithinterp.stages.job import run_on
    from arithinterp.tasks import PromptSuite, TaskSpec

    with user_errors():
        ctx = make_ctx(device, progress)
        if components is not None and (experiment or top_k or threshold):
            raise ValueError("give --components or --experiment (with --top-k/--threshold), "
                             "not both")
        names = tuple(c.strip() for c in components.split(",") if c.strip()) \
            if components is not None else ()
        if components is not None and not names:
            raise ValueError("--components is empty: name at least one, e.g. L1H3,L0.mlp")
        select = finetune.Selection(components=names) if names else finetune.Selection(
            experiment=experiment, top_k=top_k if threshold is None and top_k is not None
            else (3 if threshold is None else None), threshold=threshold,
            kinds=tuple(kinds or ("head",)))
        llm_options = {"--suite": suite, "--other-suite": other_suite, "--shots": shots,
                       "--text": text, "--window": window, "--text-windows": text_windows}
        run = RunDir.open(target) if is_run(target) else None
        if not _is_llm(target, run):
            if given := [k for k, v in llm_options.items() if v is not None and v != []]:
                raise ValueError(f"{', '.join(given)}: for pretrained LLMs; {target} is a model "
                                 "trained on a task (use --task, --other-task)")
            config = finetune.FinetuneConfig(
                name=name, task=TaskSpec.from_name(task) if task else None,
                other_tasks=tuple(TaskSpec.from_name(t) for t in other_task or ()),
                select=select, arms=choices("--arms", arms, finetune.ARMS), n_random=n_random,
                seeds=tuple(seeds or (0,)), rescale=rescale)
            config = replace(config, **_budget(config, steps, lr, batch_size, n_train, n_eval))
            finetune.check(config, run, load_model(target))
        else:
            if task or other_task:
                raise ValueError("--task, --other-task: for models trained on a task; "
                                 f"{target} is a pretrained LLM (use --suite, --other-suite)")
            n_shots = {} if shots is None else {"n_shots": shots}
            config = llm_finetune.LLMFinetuneConfig(
                select=select, name=name,
                suite=PromptSuite.from_name(suite, **n_shots) if suite else None,
                other_suites=tuple(PromptSuite.from_name(s, **n_shots)
                                   for s in other_suite or ()),
                arms=choices("--arms", arms, finetune.ARMS), n_random=n_random,
                seeds=tuple(seeds or (0,)), rescale=rescale,
                **{k: v for k, v in (("text", text), ("window", window),
                                     ("n_windows", text_windows)) if v is not None})
            config = replace(config, **_budget(config, steps, lr, batch_size, n_train, n_eval))
            here = Context(device="cpu", progress=False)
            llm_finetune.check(config, run, run_model(run, here) if run else
                               _load_llm(target))
        result = run_on(target, [config], runs_dir=runs_dir, name=run_name, ctx=ctx)
    print_finetune(result.run, schema.finetune_key(name))
    out.print(f"run written to {result.run.dir}")


def _is_llm(target: str, run) -> bool:
    """Whether TARGET is a pretrained LLM: a source such as llm:smollm2, or a run of one."""
    from arithinterp.pretrained import is_llm_source

    return is_llm_source(target) or (run is not None and run.has(schema.SOURCE, schema.MODEL))


def _load_llm(source: str):
    from arithinterp.pretrained import check_llm_source, load_llm

    check_llm_source(source)
    return load_llm(source)


def _budget(config, steps, lr, batch_size, n_train, n_eval) -> dict:
    """The config fields the budget options replace (unset options keep the config's)."""
    from dataclasses import replace

    schedule = {k: v for k, v in (("max_steps", steps), ("lr", lr),
                                  ("batch_size", batch_size)) if v is not None}
    out = {k: v for k, v in (("n_train", n_train), ("n_eval", n_eval)) if v is not None}
    return {**out, "schedule": replace(config.schedule, **schedule)}


@app.command("finetune-scenario")
def finetune_scenario_cmd(
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[str, typer.Option(help="Stem of the run's name: <name>-base.")] = "mix",
    seeds: Annotated[list[int] | None, typer.Option(
        help="Fine-tuning seeds (repeatable; default 0, 1, 2).")] = None,
    steps: Annotated[int | None, typer.Option(help="Steps per fine-tune (default 300).")
                     ] = None,
    quick: Annotated[bool, typer.Option(help="A tiny model and budget, for smoke runs.")
                     ] = False,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """The selective fine-tuning scenario: a model that adds well and subtracts badly,
    its subtraction heads localized and fine-tuned against random heads, everything and
    nothing: gain on subtraction, forgetting of addition."""
    from dataclasses import replace

    from arithinterp.studies.selective_finetuning import (
        COMPARISON,
        FinetuneScenario,
        run_scenario,
    )

    with user_errors():
        scenario = FinetuneScenario.smoke(name) if quick else FinetuneScenario(name=name)
        scenario = replace(scenario, seeds=tuple(seeds) if seeds else scenario.seeds,
                           steps=scenario.steps if steps is None else steps)
        run = run_scenario(scenario, runs_dir, make_ctx(device, progress))
    print_finetune(run, schema.finetune_key(COMPARISON))
    out.print(f"run written to {run.dir}")


@app.command("multiply")
def multiply_cmd(
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[str, typer.Option(help="Stem of the run names: <name>-<arm>-s<seed>, "
                                           "<name>-study.")] = "mul3",
    arms: Annotated[list[str] | None, typer.Option(
        help="Arms (repeatable): sft, icot, aux (default: all three).")] = None,
    seeds: Annotated[list[int] | None, typer.Option(
        help="Seeds per arm (repeatable; default: 0 and 1).")] = None,
    scale: Annotated[Literal["quick", "default", "paper"], typer.Option(
        help="default: 3x3 on a CPU (15-20 min a run); quick: 2x2, tiny, for smoke runs; "
             "paper: Bai et al.'s 4x4, d_model 768, 808k problems, for a GPU.")] = "default",
    quick: Annotated[bool, typer.Option(help="Same as --scale quick.")] = False,
    aux_weight: Annotated[float, typer.Option(help="λ of the running-sum loss.")] = 1.0,
    zoo: Annotated[bool, typer.Option(
        help="Copy the best run of each arm into the zoo as <name>-<arm>.")] = False,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """The multiplication study (Bai et al. 2025): train SFT, implicit chain of thought and
    the auxiliary running-sum loss with several seeds, analyse each model, compare them."""
    from arithinterp.studies.multiplication import (
        ARMS,
        MultiplicationStudy,
        run_study,
        save_to_zoo,
    )

    with user_errors():
        study = MultiplicationStudy(name=name, arms=choices("--arms", arms, ARMS),
                                    seeds=tuple(seeds if seeds is not None else (0, 1)),
                                    scale="quick" if quick else scale, aux_weight=aux_weight)
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



@app.command("modular")
def modular_cmd(
    target: Annotated[str, typer.Argument(help="A run of a modular model (analysed in place), "
                                               "a zoo name (modadd-113) or a model folder.")],
    freqs: Annotated[str | None, typer.Option(
        help="Key frequencies, e.g. 14,35,41 (default: found from the logit spectrum).")
    ] = None,
    progress_measures: Annotated[bool, typer.Option(
        help="Progress measures over the training snapshots.")] = True,
    probes: Annotated[bool, typer.Option(help="Probe cos/sin(w_k x) of a, b, c.")] = True,
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[str | None, typer.Option(
        help="Run to write into when TARGET is a model (default: a timestamp).")] = None,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """The Fourier picture of a modular-arithmetic model (Nanda et al. 2023): key
    frequencies, restricted and excluded loss, neurons, progress measures over training."""
    from arithinterp.grokking import check_modular
    from arithinterp.models import load_model
    from arithinterp.stages.job import run_on
    from arithinterp.stages.modular import ModularConfig

    with user_errors():
        keys = None
        if freqs is not None:
            try:
                keys = tuple(int(k) for k in freqs.split(",") if k.strip())
            except ValueError:
                raise ValueError(f"--freqs must be integers separated by commas, got "
                                 f"{freqs!r}") from None
        config = ModularConfig(freqs=keys, progress=progress_measures, probes=probes)
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
