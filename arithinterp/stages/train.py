"""Stage `train`: train a model per a `TrainConfig` into the run's ``model/`` folder.

An interrupted stage resumes from the checkpoint in ``model/checkpoint/`` (bitwise as if
never interrupted); without a checkpoint it starts over. Afterwards the training log
becomes ``model/training_curve.parquet`` (one row per eval x answer digit).
"""

from __future__ import annotations

import json

import pandas as pd

from arithinterp import schema
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context
from arithinterp.training.config import TrainConfig
from arithinterp.training.loop import train

NAME = "train"
Config = TrainConfig


def key(config: TrainConfig) -> str:
    return schema.MODEL


def curve_table(rows: list[dict]) -> pd.DataFrame:
    """Training metrics, one row per (step, answer digit): tidy for plotting."""
    out = []
    for r in rows:
        losses = r.get("digit_loss") or [float("nan")] * len(r["digit_accuracy"])
        for digit, (acc, loss) in enumerate(zip(r["digit_accuracy"], losses, strict=True)):
            out.append({"step": r["step"], "loss": r["loss"], "lr": r["lr"],
                        "exact_match": r["exact_match"], "digit": digit, "digit_accuracy": acc,
                        "digit_loss": loss,
                        "train_exact_match": r.get("train_exact_match", float("nan"))})
    return pd.DataFrame(out, columns=[*schema.TRAINING_CURVE.columns, "train_exact_match"])


def run(config: TrainConfig, run: RunDir, ctx: Context) -> dict:
    """Train (or resume training) into ``model/`` and record the training curve."""
    out = run.dir / schema.MODEL
    resume = (out / schema.CHECKPOINT_DIR).is_dir()
    result = train(config, out, resume=resume, overwrite=not resume, device=ctx.device,
                   progress=ctx.progress)
    for artifact in (schema.TRAIN_CONFIG, schema.TRAIN_LOG, schema.CHECKPOINT_CONFIG,
                     schema.WEIGHTS, schema.EXTRA_WEIGHTS, schema.TRAIN_FINAL):
        run.register_file(artifact.at(schema.MODEL), schema.MODEL, artifact.kind)
    rows = [json.loads(line) for line in run.load(schema.TRAIN_LOG, schema.MODEL).splitlines()]
    run.save(schema.TRAINING_CURVE, schema.MODEL, curve_table(rows))
    return {"steps": result.steps, "stopped_early": result.stopped_early, "mode": config.mode,
            "exact_match": result.final["exact_match"], "n_test": result.final["n"],
            "seconds": round(result.seconds, 1)}
