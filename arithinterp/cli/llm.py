"""The llm commands: describe a pretrained LLM, and run arithmetic evaluation and the
localization pipeline on it into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from arithinterp import schema
from arithinterp.cli.common import (
    Device,
    Progress,
    RunName,
    RunsDir,
    app,
    make_ctx,
    out,
    rich_table,
    user_errors,
)

llm_app = typer.Typer(help="Pretrained LLMs: llm:smollm2 (embedded, offline) or any Hugging "
                           "Face causal LM (hf:<hub name or folder>).", rich_markup_mode=None)
app.add_typer(llm_app, name="llm")

Model = Annotated[str, typer.Option(
    help="llm:smollm2 (embedded), hf:<hub name> (needs a network) or hf:<local folder>; a "
         "bare folder or hub name is read as hf:.")]


def llm_source(model: str) -> str:
    """The model option as a source: llm:/hf: as given, anything else as hf:."""
    from arithinterp.pretrained import HF_PREFIX, is_llm_source

    return model if is_llm_source(model) else HF_PREFIX + model


@llm_app.command("info")
def info_cmd(model: Model = "llm:smollm2") -> None:
    """Architecture, layers, heads, KV heads, how numbers tokenize, and the load time (the
    first load of llm:smollm2 dequantizes and caches it)."""
    from arithinterp.pretrained import cache_dir, llm_info

    with user_errors():
        info = llm_info(llm_source(model))
    out.print(f"[bold]{info.source}[/bold]: {info.family}, {info.n_layers} layers × "
              f"{info.n_heads} heads ({info.n_kv_heads} key/value heads), d_model "
              f"{info.d_model}, d_mlp {info.d_mlp}, vocabulary {info.d_vocab}, "
              f"{info.n_params / 1e6:.1f} M parameters; loaded in {info.load_seconds:.1f} s")
    for number, tokens in info.numbers.items():
        out.print(f"  {number:>7} -> {tokens}")
    out.print(f"cache: {cache_dir()}")


@llm_app.command("run")
def run_cmd(
    model: Model = "llm:smollm2",
    op: Annotated[Literal["+", "-", "*"], typer.Option(help="The operation.")] = "+",
    digits: Annotated[int, typer.Option(help="Digits of each operand (1..6).")] = 1,
    template: Annotated[Literal["few-shot", "chat"], typer.Option(
        help="Solved examples then the question, or the model's chat template.")] = "few-shot",
    shots: Annotated[int, typer.Option(help="Solved examples before the question.")] = 3,
    n_eval: Annotated[int, typer.Option(help="Problems to evaluate.")] = 100,
    change: Annotated[Literal["a", "b", "op"], typer.Option(
        help="What a minimal pair changes: a digit of a, of b, or the operator.")] = "a",
    digit: Annotated[int, typer.Option(help="Which digit (0 = least significant).")] = 0,
    n_pairs: Annotated[int, typer.Option(help="Minimal pairs (from the correct answers).")] = 32,
    n_exact: Annotated[int, typer.Option(
        help="Top MLPs patched exactly, and as many top heads where the fast engine does not "
             "cover the model (on Llama-family models every head is).")] = 20,
    top_k: Annotated[int, typer.Option(help="Heads knocked out together.")] = 10,
    n_random: Annotated[int, typer.Option(help="Random draws of as many heads.")] = 5,
    seed: Annotated[int, typer.Option(help="Draws the problems and the pairs.")] = 0,
    batch_size: Annotated[int | None, typer.Option(
        help="Prompts per forward pass (default: as many as fit in a quarter of the free "
             "memory, at most 64).")] = None,
    runs_dir: RunsDir = Path("runs"),
    name: RunName = None,
    device: Device = "cpu",
    progress: Progress = True,
) -> None:
    """Evaluate the LLM on a prompt suite, keep the problems it answers, and localize: every
    head and MLP by attribution patching, exact patching (every head and the residual stream
    by layer x position on Llama-family models; the top MLPs), the top heads' paths to the
    logits, DLA, the logit lens, attention to the operands, and knockout of the top heads vs
    random heads."""
    from arithinterp.stages.job import run_job
    from arithinterp.studies.demo import llm_job

    with user_errors():
        config = _config(op, digits, template, shots, n_eval, change, digit, n_pairs, n_exact,
                         top_k, n_random, seed, batch_size)
        run = run_job(runs_dir, name, llm_job(llm_source(model), config),
                      ctx=make_ctx(device, progress)).run
    print_llm(run, config)
    out.print(f"run written to {run.dir}")


def _config(op, digits, template, shots, n_eval, change, digit, n_pairs, n_exact, top_k,
            n_random, seed, batch_size):
    from arithinterp.llm import LLMLocalizeConfig
    from arithinterp.stages.llm import LLMConfig
    from arithinterp.tasks import PromptSuite

    suite = PromptSuite(op=op, digits=digits, template=template, n_shots=shots)
    return LLMConfig(suite=suite, n_eval=n_eval, change=change, digit=digit, n_pairs=n_pairs,
                     localize=LLMLocalizeConfig(n_exact=n_exact, top_k=top_k,
                                                n_random=n_random, seed=seed), seed=seed,
                     batch_size=batch_size)


def print_llm(run, config) -> None:
    """The evaluation, the strongest components and the knockout of an llm stage."""
    from arithinterp.stages.llm import key

    stage = key(config)
    summary = run.load(schema.LOCALIZE_SUMMARY, stage)
    ev = summary["evaluation"]
    out.print(f"[bold]{summary['model']}[/bold] on {ev['suite']}: exact match "
              f"{ev['exact_match']:.3f} ({ev['n_correct']} of {ev['n']}); {summary['kept']}")
    ranking = run.load(schema.RANKING, stage).head(10)
    out.print(rich_table(f"top components by exact patching ({summary['metric']}, 1 = restores "
                         "the clean metric)", ranking[["rank", "component", "effect"]]))
    knockout = run.load(schema.KNOCKOUT, stage)
    if len(knockout):
        out.print(rich_table("knockout (mean ablation; exact_match = first answer token)",
                             knockout[["condition", "components", "exact_match", "metric_drop"]]))
