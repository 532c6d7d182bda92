"""The llm commands: describe a pretrained LLM, and run arithmetic evaluation and the
localization pipeline on it into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from arithinterp.cli.options import Opt, Options, with_options
from arithinterp.llm import LLMLocalizeConfig
from arithinterp.stages.llm import LLMConfig
from arithinterp.tasks import PromptSuite

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


SUITE = Options(PromptSuite, "op", "digits", "template", Opt("n_shots", flag="shots"))
PAIRS = Options(LLMConfig, "n_eval", "change", "digit", "n_pairs")
LOCALIZE = Options(LLMLocalizeConfig, "n_exact", "top_k", "n_random")
BATCH = Options(LLMConfig, "seed", "batch_size")  # the seed draws the localization's too


@llm_app.command("run")
@with_options(SUITE, PAIRS, LOCALIZE, BATCH, before="runs_dir")
def run_cmd(
    model: Model = "llm:smollm2",
    runs_dir: RunsDir = Path("runs"),
    name: RunName = None,
    device: Device = "cpu",
    progress: Progress = True,
    **parsed: Any,
) -> None:
    """Evaluate the LLM on a prompt suite, keep the problems it answers, and localize: every
    head and MLP by attribution patching, exact patching (every head and the residual stream
    by layer x position on Llama-family models; the top MLPs), the top heads' paths to the
    logits, DLA, the logit lens, attention to the operands, and knockout of the top heads vs
    random heads."""
    from arithinterp.stages.job import run_job
    from arithinterp.studies.demo import llm_job

    with user_errors():
        batch = BATCH.values(parsed)
        config = LLMConfig(suite=PromptSuite(**SUITE.values(parsed)), **PAIRS.values(parsed),
                           localize=LLMLocalizeConfig(**LOCALIZE.values(parsed),
                                                      seed=batch["seed"]), **batch)
        run = run_job(runs_dir, name, llm_job(llm_source(model), config),
                      ctx=make_ctx(device, progress)).run
    print_llm(run, config)
    out.print(f"run written to {run.dir}")


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
