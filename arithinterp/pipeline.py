"""The main job, stage by stage, into one run directory; a finished stage is never redone.

Stages: ``model`` (the shipped zoo model, trained with its recipe if it is missing),
``evaluate`` (held-out accuracy: exact, per digit, by number of carries, worst cases).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from arithinterp.evaluate import evaluate
from arithinterp.models import ZOO_DIR, LoadedModel, load_model, resolve_model_path, zoo_names
from arithinterp.runs import RunDir
from arithinterp.tasks import make_splits
from arithinterp.train import TRAIN_CONFIG_FILE, TrainConfig, train, zoo_recipe

DEFAULT_MODEL = "add3-reversed"


@dataclass(frozen=True)
class DemoConfig:
    """What the main job analyses and how."""

    model: str = DEFAULT_MODEL  # a zoo name or a checkpoint directory
    n_eval: int | None = None  # held-out problems to score; None: the model's whole test split
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.n_eval is not None and self.n_eval < 1:
            raise ValueError(f"n_eval must be None or >= 1, got {self.n_eval}")


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
        _, test = make_splits(tc.task, tc.n_train, tc.n_test, tc.seed, sampling=tc.sampling)
    else:
        _, test = make_splits(loaded.task, 0, n or 2_000, seed=12345)
    return test if n is None else test[:n]


def run_demo(config: DemoConfig, runs_dir: str | Path, *, name: str | None = None,
             overwrite: bool = False, progress: bool = True) -> RunDir:
    """Run (or resume) the main job into runs_dir/name and mark the run complete."""
    run = RunDir.create(runs_dir, name, config=asdict(config), seeds={}, overwrite=overwrite)
    path = ensure_model(config.model, device=config.device, progress=progress)
    loaded = load_model(path, device=config.device)

    if not run.stage_done("model"):
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
        run.finish_stage("model", {"source": str(path), "zoo": config.model in zoo_names()})

    if not run.stage_done("evaluate"):
        run.start_stage("evaluate")
        test = held_out_split(path, loaded, config.n_eval)
        result = evaluate(loaded.model, test)
        run.save_json("evaluate/summary.json", result.summary(), stage="evaluate")
        run.save_table("evaluate/examples.parquet", result.examples, stage="evaluate")
        run.save_table("evaluate/by_carries.parquet", result.by_carries, stage="evaluate")
        run.finish_stage("evaluate", {"exact_match": result.exact_match, "n": len(test)})

    run.finish()
    return run


def _curve_table(rows: list[dict]) -> pd.DataFrame:
    """Training metrics, one row per (step, answer digit): tidy for plotting."""
    out = []
    for r in rows:
        for digit, acc in enumerate(r["digit_accuracy"]):
            out.append({"step": r["step"], "loss": r["loss"], "lr": r["lr"],
                        "exact_match": r["exact_match"], "digit": digit, "digit_accuracy": acc})
    return pd.DataFrame(out)
