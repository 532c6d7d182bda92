"""The main job, stage by stage, into one run directory; a finished stage is never redone.

Stages: ``model`` (the shipped zoo model, trained with its recipe if it is missing),
``evaluate`` (held-out accuracy: exact, per digit, by number of carries, worst cases),
``localize`` (patching, attribution, paths, DLA, logit lens, attention, ranking, knockout:
``localize/*.parquet`` tables, per-prompt patching values and the activation cache as
``localize/*.safetensors``, ``localize/summary.json``), ``probes`` (digit and carry probes
with their controls: ``probes/digits*.parquet``, weights as safetensors) and ``fourier``
(``fourier/spectrum.parquet``, ``fourier/r2.parquet``). The probe scripts in ``probes/`` write
the same stages through `write_probes` / `write_fourier`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from arithinterp.analysis.suite import LocalizeConfig, compute_localization
from arithinterp.evaluate import evaluate
from arithinterp.fourier import FourierReport, compute_fourier_report
from arithinterp.models import ZOO_DIR, LoadedModel, load_model, resolve_model_path
from arithinterp.probes import (
    ProbeResults,
    compute_probe_summary,
    fit_probes,
    make_probe_dataset,
    make_targets,
)
from arithinterp.runs import RunDir, is_run
from arithinterp.tasks import TaskSpec
from arithinterp.tasks.data import make_test_split
from arithinterp.train import TRAIN_CONFIG_FILE, TrainConfig, train, zoo_recipe

DEFAULT_MODEL = "add3-reversed"


DIGIT_GROUPS = ("operands", "answer", "carries")


@dataclass(frozen=True)
class DemoConfig:
    """What the main job analyses and how."""

    model: str = DEFAULT_MODEL  # a zoo name or a checkpoint directory
    n_eval: int | None = None  # held-out problems to score; None: the model's whole test split
    device: str = "auto"
    localize: LocalizeConfig | None = field(default_factory=LocalizeConfig)  # None: skip
    n_probe: int | None = 2_000  # problems for digit/carry probes and Fourier; None: skip
    seed: int = 0  # probe problems and splits

    def __post_init__(self) -> None:
        if self.n_eval is not None and self.n_eval < 1:
            raise ValueError(f"n_eval must be None or >= 1, got {self.n_eval}")
        if self.n_probe is not None and self.n_probe < 10:
            raise ValueError(f"n_probe must be None or >= 10, got {self.n_probe}")


def ensure_model(name: str, *, device: str = "auto", progress: bool = True) -> Path:
    """Path of a checkpoint; a zoo model missing from disk is trained with its recipe first."""
    try:
        return resolve_model_path(name)
    except ValueError:
        recipe = zoo_recipe(name)  # raises with the known names if there is none
    out = ZOO_DIR / name
    train(recipe, out, overwrite=True, device=device, progress=progress)
    return out


def held_out_split(path: Path, loaded: LoadedModel, n: int | None = None):
    """The test split the model was trained against (or a fresh seeded one), first n problems."""
    cfg_file = path / TRAIN_CONFIG_FILE
    if cfg_file.is_file():
        tc = TrainConfig.from_dict(json.loads(cfg_file.read_text()))
        test = make_test_split(tc.task, tc.n_test, tc.seed, sampling=tc.sampling)
    else:
        test = make_test_split(loaded.task, n or 2_000, seed=12345)
    return test if n is None else test[:n]


def run_demo(config: DemoConfig, runs_dir: str | Path, *, name: str | None = None,
             overwrite: bool = False, progress: bool = True) -> RunDir:
    """Run (or resume) the main job into runs_dir/name and mark the run complete."""
    seeds = {"localize": config.localize.seed} if config.localize else {}
    path = ensure_model(config.model, device=config.device, progress=progress)
    loaded = load_model(path, device=config.device)  # a bad model fails before any run exists
    run = RunDir.create(runs_dir, name, config=asdict(config), seeds=seeds, overwrite=overwrite)
    bar = tqdm(total=4, desc="demo", unit="stage", disable=not progress)
    bar.set_postfix_str("model")
    record_model_stage(run, path)
    bar.update()

    bar.set_postfix_str("evaluate")
    if not run.stage_done("evaluate"):
        run.start_stage("evaluate")
        test = held_out_split(path, loaded, config.n_eval)
        result = evaluate(loaded.model, test)
        run.save_json("evaluate/summary.json", result.summary(), stage="evaluate")
        run.save_table("evaluate/examples.parquet", result.examples, stage="evaluate")
        run.save_table("evaluate/by_carries.parquet", result.by_carries, stage="evaluate")
        run.finish_stage("evaluate", {"exact_match": result.exact_match, "n": len(test)})
    bar.update()

    bar.set_postfix_str("localize")
    if config.localize is not None and not run.stage_done("localize"):
        run_localize_stage(run, loaded, config.localize, progress=progress)
    bar.update()

    bar.set_postfix_str("probes, fourier")
    if config.n_probe is not None:
        run_probe_stages(run, loaded, n=config.n_probe, seed=config.seed, progress=progress)
    bar.update()
    bar.close()

    run.finish()
    return run


def run_probe_stages(run: RunDir, loaded: LoadedModel, *, n: int, seed: int,
                     groups: tuple[str, ...] = DIGIT_GROUPS, key: str = "digits",
                     fourier: bool = True, progress: bool = True) -> None:
    """Fit probes for `groups` (stage `probes`) and the Fourier report (stage `fourier`) on
    n fresh problems, skipping a stage the run has finished already."""
    data = make_probe_dataset(loaded.task, n, seed)
    if not run.stage_done("probes"):
        targets = make_targets(data, list(groups))
        if not targets:
            raise ValueError(f"no target of {list(groups)} varies over these {n} problems")
        results = fit_probes(loaded, data, targets, seed=seed, progress=progress)
        write_probes(run, key, results, {"n": n, "seed": seed, "task": asdict(loaded.task),
                                         "targets": [t.name for t in targets]})
    if fourier and not run.stage_done("fourier"):
        report = compute_fourier_report(loaded.model, data, progress=progress)
        write_fourier(run, report, {"n": n, "seed": seed, "task": asdict(loaded.task)})


def run_probe(target: str | Path, runs_dir: str | Path, *, name: str | None = None,
              n: int = 2_000, seed: int = 0, groups: tuple[str, ...] = DIGIT_GROUPS,
              device: str = "auto", overwrite: bool = False, progress: bool = True) -> RunDir:
    """Probes and the Fourier report of a model (or the model behind a run) in a new run."""
    path = model_source(target)
    loaded = load_model(path, device=device)
    if loaded.task is None:
        raise ValueError(f"{path} records no arithmetic task to probe")
    make_targets(make_probe_dataset(loaded.task, 10, seed), list(groups))  # bad names: fail early
    run = RunDir.create(runs_dir, name, config={"model": str(path), "n": n, "groups": list(groups)},
                        seeds={"probes": seed}, overwrite=overwrite)
    record_model_stage(run, path)
    key = "digits" if tuple(groups) == DIGIT_GROUPS else "probes"
    run_probe_stages(run, loaded, n=n, seed=seed, groups=groups, key=key, progress=progress)
    run.finish()
    return run


def _restart_stage(run: RunDir, stage: str) -> dict:
    """Start `stage`; return what earlier writers recorded in its summary, to keep."""
    kept = run.manifest["stages"].get(stage, {}).get("summary") or {}
    run.start_stage(stage)
    return kept


def write_probes(run: RunDir, key: str, results: ProbeResults, extra: dict) -> pd.DataFrame:
    """Write probe results as `probes/{key}*` (table, summary, predictions, weights, config)
    into the run's `probes` stage, keeping other keys' summaries; returns the summary."""
    summary = compute_probe_summary(results.table)
    kept = _restart_stage(run, "probes")
    table, weights = results.artifacts()
    run.save_table(f"probes/{key}.parquet", table, stage="probes")
    run.save_table(f"probes/{key}_summary.parquet", summary, stage="probes")
    if len(results.predictions):  # regression probes: test-set predictions vs truth
        run.save_table(f"probes/{key}_predictions.parquet", results.predictions, stage="probes")
    run.save_tensors(f"probes/{key}_weights.safetensors", weights, stage="probes",
                     metadata={"space": "activation", "formula": "act @ coef.T + intercept"})
    run.save_json(f"probes/{key}_config.json", {**asdict(results.config), **extra},
                  stage="probes")
    run.finish_stage("probes", {**kept, key: {
        "n_probes": int(table["probe"].nunique()), "table": f"probes/{key}.parquet", **{
            k: v for k, v in extra.items() if k in ("n", "seconds")}}})
    return summary


def write_fourier(run: RunDir, report: FourierReport, extra: dict) -> None:
    """Write a Fourier report as `fourier/spectrum.parquet` and `fourier/r2.parquet`."""
    kept = _restart_stage(run, "fourier")
    run.save_table("fourier/spectrum.parquet", report.spectrum, stage="fourier")
    run.save_table("fourier/r2.parquet", report.r2, stage="fourier")
    run.save_json("fourier/config.json", extra, stage="fourier")
    r2 = report.r2.set_index("source")
    run.finish_stage("fourier", {**kept, "median_r2_W_E": float(r2.loc["W_E", "median_r2"]),
                                 "median_r2_W_U": float(r2.loc["W_U", "median_r2"])})


def model_source(target: str | Path) -> Path:
    """The checkpoint behind a run directory (its model stage), a zoo name or a folder."""
    if is_run(target):
        stages = RunDir.open(target).manifest["stages"]
        if "model" not in stages or "source" not in (stages["model"].get("summary") or {}):
            raise ValueError(f"run {target} records no model (no finished 'model' stage)")
        return Path(stages["model"]["summary"]["source"])
    return resolve_model_path(target)


def record_model_stage(run: RunDir, path: Path) -> None:
    """Copy the model's config, training config, metrics and training curve into the run."""
    if run.stage_done("model"):
        return
    run.start_stage("model")
    run.save_json("model/config.json", json.loads((path / "config.json").read_text()),
                  stage="model")
    for extra in ("train_config.json", "metrics.json"):
        if (path / extra).is_file():
            run.save_json(f"model/{extra}", json.loads((path / extra).read_text()),
                          stage="model")
    curve = path / "metrics.jsonl"
    if curve.is_file():
        rows = [json.loads(line) for line in curve.read_text().splitlines()]
        run.save_table("model/training_curve.parquet", _curve_table(rows), stage="model")
    run.finish_stage("model", {"source": str(path.resolve()), "zoo": path.parent == ZOO_DIR})


def run_localize(target: str | Path, config: LocalizeConfig, runs_dir: str | Path, *,
                 name: str | None = None, task: TaskSpec | None = None, device: str = "auto",
                 overwrite: bool = False, progress: bool = True) -> RunDir:
    """Localization of a model (or the model behind a run) into a new run directory."""
    path = model_source(target)
    loaded = load_model(path, device=device)
    if task is not None:
        if task.seq_len > loaded.model.cfg.n_ctx:
            raise ValueError(f"task {task.name} needs {task.seq_len} positions; the model has "
                             f"{loaded.model.cfg.n_ctx}")
        loaded = LoadedModel(loaded.model, loaded.spec, task)
    run = RunDir.create(runs_dir, name, config={"model": str(path), "task": asdict(loaded.task),
                                                "localize": asdict(config)},
                        seeds={"localize": config.seed}, overwrite=overwrite)
    record_model_stage(run, path)
    if not run.stage_done("localize"):
        run_localize_stage(run, loaded, config, progress=progress)
    run.finish()
    return run


def run_localize_stage(run: RunDir, loaded: LoadedModel, config: LocalizeConfig, *,
                       progress: bool = True) -> None:
    """Compute the localization suite and write it into the run's `localize/` folder."""
    run.start_stage("localize")
    result = compute_localization(loaded.model, loaded.task, config, progress=progress)
    for name, table in result.tables.items():
        run.save_table(f"localize/{name}.parquet", table, stage="localize")
    for group in ("patching", "cache"):
        tensors = {k.split("/", 1)[1]: v for k, v in result.tensors.items()
                   if k.startswith(group + "/")}
        if tensors:
            run.save_tensors(f"localize/{group}.safetensors", tensors, stage="localize")
    run.save_json("localize/summary.json", result.summary, stage="localize")
    run.finish_stage("localize", {k: result.summary[k] for k in
                                  ("change", "metric", "n_pairs", "selected")})


def _curve_table(rows: list[dict]) -> pd.DataFrame:
    """Training metrics, one row per (step, answer digit): tidy for plotting."""
    out = []
    for r in rows:
        for digit, acc in enumerate(r["digit_accuracy"]):
            out.append({"step": r["step"], "loss": r["loss"], "lr": r["lr"],
                        "exact_match": r["exact_match"], "digit": digit, "digit_accuracy": acc})
    return pd.DataFrame(out)
