"""Stage `multiplication`: the reverse-engineering views of a multiplication model (Bai et
al. 2025) into ``multiplication/``.

- running-sum probes: ridge probes of every c_k at the position that predicts answer digit k,
  in every layer, with the usual controls (``probes.parquet``), and per k the layer where the
  MAE is lowest (``running_sums.parquet``);
- the attention graph: edges key -> query of every head with mean attention at least
  `threshold` (``attention_graph.parquet``), and per head and query the operand digit pair it
  attends to most (``operand_pairs.parquet``): the "cache and retrieve" structure;
- logit attribution per answer digit (``digit_attribution.parquet``);
- Fourier R² (frequencies {0, 1, 2, 5}) of the digit embeddings, of the last MLP's output and
  of the final hidden state grouped by answer digit, against a randomly initialised model of
  the same shape (``fourier.parquet``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from arithinterp import schema
from arithinterp.analysis.attention import compute_attention_graph, compute_operand_pairs
from arithinterp.analysis.attribution import compute_digit_attribution
from arithinterp.fields import check_float, check_int
from arithinterp.fourier import BAI_FREQS, compute_fourier_report
from arithinterp.models import HookedModel, build_model, facts
from arithinterp.probes.summary import compute_running_sum_summary
from arithinterp.probes.sweep import ProbeConfig, fit_probes
from arithinterp.probes.targets import make_probe_dataset, make_targets
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model
from arithinterp.tasks import Dataset

NAME = "multiplication"
FOURIER_SITES = ("mlp_out", "resid_post")


@dataclass(frozen=True)
class MultiplicationConfig:
    """`n` fresh problems (seeded) for the probes and Fourier tables, the first `n_attention`
    of them for attention and attribution, and the attention graph's edge threshold."""

    n: int = 2_000
    n_attention: int = 512
    seed: int = 0
    threshold: float = 0.1
    fit: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        check_int("n", self.n, min=10)
        check_int("n_attention", self.n_attention, min=10)
        check_float("threshold", self.threshold, min=0, max=1, min_open=True)


Config = MultiplicationConfig


def key(config: MultiplicationConfig) -> str:
    return schema.MULTIPLICATION


def fourier_table(model: HookedModel, data: Dataset) -> pd.DataFrame:
    """Median R² of {0, 1, 2, 5} per source: W_E, and the last layer's MLP output and hidden
    state grouped by each answer digit at the position that predicts it."""
    last = facts(model).n_layers - 1
    report = compute_fourier_report(model, data, sites=FOURIER_SITES, layers=(last,))
    r2 = report.r2
    answer = r2["grouped_by"].fillna("").str.startswith("c")
    rows = [{"source": "W_E", "median_r2": float(r2.loc[r2["source"] == "W_E", "median_r2"]
                                                 .iloc[0]), "n_tables": 1}]
    for site in FOURIER_SITES:
        tables = r2[(r2["site"] == site) & answer]
        rows.append({"source": site, "median_r2": float(tables["median_r2"].median()),
                     "n_tables": len(tables)})
    return pd.DataFrame(rows).assign(freqs=",".join(map(str, BAI_FREQS)))


def run(config: MultiplicationConfig, run: RunDir, ctx: Context) -> dict:
    """Probes, attention graph, digit attribution and Fourier R² of the run's model."""
    loaded = run_model(run, ctx)
    need_task(loaded, "the multiplication analysis")
    task = loaded.task
    if task.op != "mul":
        raise ValueError(f"the multiplication analysis needs a multiplication model, got "
                         f"task {task.name}")
    data = make_probe_dataset(task, config.n, config.seed)
    few = data[: config.n_attention]
    targets = make_targets(data, [f"running_sum_{k}" for k in range(task.answer_width)])
    positions = tuple(p - 1 for p in task.answer_positions())
    probes = fit_probes(loaded, data, targets,
                        replace(config.fit, positions=positions, seed=config.seed),
                        progress=ctx.progress)
    sums = compute_running_sum_summary(probes.table, task)
    stage = schema.MULTIPLICATION
    run.save(schema.MUL_PROBES, stage, probes.table)
    run.save(schema.MUL_RUNNING_SUMS, stage, sums)
    run.save(schema.MUL_ATTENTION_GRAPH, stage,
             compute_attention_graph(loaded.model, few, threshold=config.threshold))
    run.save(schema.MUL_OPERAND_PAIRS, stage, compute_operand_pairs(loaded.model, few))
    run.save(schema.MUL_DIGIT_ATTRIBUTION, stage,
             compute_digit_attribution(loaded.model, few, task.vocab.digit_ids()))
    random = build_model(replace(loaded.spec, seed=loaded.spec.seed + 1), task).eval()
    fourier = pd.concat([fourier_table(loaded.model, data).assign(model="trained"),
                         fourier_table(random, data).assign(model="random")],
                        ignore_index=True)
    run.save(schema.MUL_FOURIER, stage, fourier[list(schema.MUL_FOURIER.columns)])
    summary = {"task": task.name, "n": config.n,
               "running_sum_mae": {f"c{int(r.digit)}": round(float(r.mae), 3)
                                   for r in sums.itertuples()},
               "fourier_r2": {f"{r.model}/{r.source}": round(float(r.median_r2), 3)
                              for r in fourier.itertuples()}}
    run.save(schema.MUL_SUMMARY, stage, summary)
    return summary
