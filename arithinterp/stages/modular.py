"""Stage `modular`: the Fourier picture of a modular-arithmetic model (`arithinterp.grokking`)
into ``modular/``.

- ``logit_spectrum.parquet``: the logits' share along cos/sin(w_k(a+b)) per frequency k, the
  key frequencies marked; ``embedding_spectrum.parquet``: the same for the residue rows of W_E;
- ``losses.parquet``: full, restricted (key frequencies only) and excluded (key frequencies
  removed) loss and accuracy on the training and test pairs;
- ``neurons.parquet``: each MLP neuron's best frequency and the variance it explains;
- ``progress.parquet``: those losses, the key frequencies' share of the logits and the Gini
  sparsity of W_E and W_L at every weight snapshot of training (the run's own snapshots, or
  for a zoo model the table shipped with it);
- ``probes.parquet``: ridge probes of cos/sin(w_k x) for x = a, b, c and each key frequency,
  at every residual site of positions a, b, '=' (with the usual controls);
- ``summary.json``: key frequencies, losses, neuron variance explained, Gini, and the steps
  at which training memorized (train accuracy >= 99%) and generalized (test accuracy >= 99%).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from arithinterp import schema
from arithinterp.catalog import is_run
from arithinterp.checkpoints import ZOO_DIR, read_weights
from arithinterp.fields import check_ints, described
from arithinterp.grokking import (
    GrokkingReport,
    check_modular,
    compute_grokking_report,
    compute_progress,
    full_grid,
)
from arithinterp.probes.sweep import ProbeConfig, fit_probes
from arithinterp.probes.targets import make_targets
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context, need_task, run_model
from arithinterp.training.checkpoints import training_split

NAME = "modular"
MILESTONE = 0.99  # accuracy that counts as memorized (train) / generalized (test)


@dataclass(frozen=True)
class ModularConfig:
    """`freqs` fixes the key frequencies (None: found from the logit spectrum); progress
    measures over the training snapshots and Fourier probes can be switched off."""

    freqs: tuple[int, ...] | None = described(
        None, "Key frequencies, e.g. 14,35,41 (default: found from the logit spectrum).")
    progress: bool = described(True, "Progress measures over the training snapshots.")
    probes: bool = described(True, "Probe cos/sin(w_k x) of a, b, c.")
    fit: ProbeConfig = field(default_factory=lambda: ProbeConfig(
        sites=("resid_pre", "resid_mid", "resid_post"), positions=(0, 1, 2)))

    def __post_init__(self) -> None:
        check_ints("freqs", self.freqs, min=1, optional=True)


Config = ModularConfig


def key(config: ModularConfig) -> str:
    return schema.MODULAR


def _snapshots(run: RunDir) -> dict[int, dict]:
    files = schema.snapshot_files(run.dir / schema.MODEL / schema.SNAPSHOTS_DIR)
    return {step: read_weights(f) for step, f in files.items()}


def _shipped_progress(run: RunDir) -> tuple[pd.DataFrame | None, str | None]:
    """The progress table a zoo model ships (its snapshots stay out of the package)."""
    source = str(run.stage_summary(schema.MODEL).get("source", ""))
    if not source.startswith("zoo:"):
        return None, None
    zoo_run = ZOO_DIR / source.removeprefix("zoo:")
    if not is_run(zoo_run) or not (zoo_run / schema.MOD_PROGRESS.at(schema.MODULAR)).is_file():
        return None, None
    return RunDir.open(zoo_run).load(schema.MOD_PROGRESS, schema.MODULAR), source


def _milestones(run: RunDir) -> dict[str, int | None]:
    """First logged steps with train / test exact match >= MILESTONE."""
    if not (run.dir / schema.TRAINING_CURVE.at(schema.MODEL)).is_file():
        return {"memorized_step": None, "generalized_step": None}
    curve = run.load(schema.TRAINING_CURVE, schema.MODEL).drop_duplicates("step")

    def first(column: str) -> int | None:
        if column not in curve:
            return None
        hit = curve[curve[column] >= MILESTONE]
        return int(hit["step"].iloc[0]) if len(hit) else None

    return {"memorized_step": first("train_exact_match"), "generalized_step": first("exact_match")}


def _summary(report: GrokkingReport) -> dict:
    losses = {f"{r.logits}_{r.split}": {"loss": r.loss, "accuracy": r.accuracy}
              for r in report.losses.itertuples()}
    neurons = report.neurons.dropna(subset=["fve"])
    return {"key_frequencies": list(report.key_frequencies),
            "key_logit_fraction": float(report.logit_spectrum.loc[
                report.logit_spectrum["key"], "fraction"].sum()),
            "losses": losses, "neuron_fve": report.neuron_fve,
            "neurons_on_key_frequencies": float(neurons["key"].mean()) if len(neurons) else None,
            "median_neuron_fve": float(neurons["fve"].median()) if len(neurons) else None,
            "gini_embedding": report.gini_embedding,
            "gini_neuron_logit": report.gini_neuron_logit}


def run(config: ModularConfig, run: RunDir, ctx: Context) -> dict:
    """Compute the Fourier report (and progress measures, probes) and write the tables."""
    loaded = run_model(run, ctx)
    need_task(loaded, "the modular analysis")
    task = check_modular(loaded.task)
    train = training_split(run.dir / schema.MODEL, task)
    report = compute_grokking_report(loaded.model, task, train, freqs=config.freqs)
    keys = list(report.key_frequencies)
    run.save(schema.MOD_LOGIT_SPECTRUM, schema.MODULAR, report.logit_spectrum)
    run.save(schema.MOD_EMBEDDING_SPECTRUM, schema.MODULAR, report.embedding_spectrum)
    run.save(schema.MOD_LOSSES, schema.MODULAR, report.losses)
    run.save(schema.MOD_NEURONS, schema.MODULAR, report.neurons)
    summary = {**_summary(report), **_milestones(run), "progress_from": None}
    if config.progress:
        snapshots = _snapshots(run)
        if snapshots and train is not None:
            table = compute_progress(loaded.model, task, snapshots, keys, train,
                                     progress=ctx.progress)
            n = len(snapshots)
            summary["progress_from"] = f"{n} snapshot{'s' if n != 1 else ''}"
        else:
            table, summary["progress_from"] = _shipped_progress(run)
        if table is not None:
            run.save(schema.MOD_PROGRESS, schema.MODULAR, table)
    if config.probes:
        grid = full_grid(task)
        names = [f"{fn}{k}_{x}" for k in keys for x in "abc" for fn in ("cos", "sin")]
        results = fit_probes(loaded, grid, make_targets(grid, names), config.fit,
                             progress=ctx.progress)
        run.save(schema.MOD_PROBES, schema.MODULAR, results.table)
        r2 = results.table[results.table["metric"] == "r2"]
        summary["best_probe_r2"] = {x: float(r2[r2["target"].str.endswith(f"_{x}")]
                                             ["score"].max()) for x in "abc"}
    run.save(schema.MOD_SUMMARY, schema.MODULAR, summary)
    return summary
