"""The multiplication study (Bai et al. 2025): SFT, implicit chain of thought and the
auxiliary running-sum loss on n×n multiplication, several seeds per arm, compared.

Each (arm, seed) is a normal run, ``<name>-<arm>-s<seed>``: a train stage, the evaluation
and the multiplication analysis (`stages.multiplication`), so every command and explorer
page works on it. The study then writes one report run, ``<name>-study``, with the
comparison (exact match, per-digit accuracy, running-sum probe MAE per c_k and Fourier R²
for every arm and seed) and the per-digit training curves of every arm. Finished runs are
reused (a rerun only does what is missing); `save_to_zoo` copies the best run of each arm
into the zoo as ``<name>-<arm>``.

Scales: ``default`` is 3×3 on a 2-layer, 4-head, d_model-128 model, sized for a CPU
(about 15-20 minutes per run); ``quick`` is 2×2 on a tiny model for tests and smoke runs;
``paper`` is Bai et al.'s configuration (4×4, 2 layers, 4 heads, d_model 768, 808k
training problems) for a GPU (``--device auto``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pandas as pd

from arithinterp import schema
from arithinterp.checkpoints import ZOO_DIR
from arithinterp.disk import StrPath
from arithinterp.fields import check_choice, check_float, described
from arithinterp.models import ModelSpec
from arithinterp.runs import RunDir
from arithinterp.stages.base import Context
from arithinterp.stages.evaluate import EvaluateConfig
from arithinterp.stages.job import ensure_job, run_on
from arithinterp.stages.multiplication import MultiplicationConfig
from arithinterp.tasks import TaskSpec
from arithinterp.training.config import TrainConfig, with_mode
from arithinterp.training.plugins import ICoT

Arm = Literal["sft", "icot", "aux"]
ARMS: tuple[str, ...] = ("sft", "icot", "aux")
Scale = Literal["quick", "default", "paper"]
STUDY = "study"  # the report run's one stage


@dataclass(frozen=True)
class MultiplicationStudy:
    """Which arms, seeds and scale; runs are named ``<name>-<arm>-s<seed>``."""

    name: str = described("mul3", "Stem of the run names: <name>-<arm>-s<seed>, <name>-study.")
    arms: tuple[Arm, ...] = described(ARMS, "Arms: sft, icot, aux.")
    seeds: tuple[int, ...] = described((0, 1), "Seeds per arm.")
    scale: Scale = described(
        "default", "default: 3x3 on a CPU (15-20 min a run); quick: 2x2, tiny, for smoke runs; "
        "paper: Bai et al.'s 4x4, d_model 768, 808k problems, for a GPU.")
    aux_weight: float = described(1.0, "λ of the running-sum loss (arm aux).")
    n_analysis: int = 2_000  # problems for probes, attention and Fourier

    def __post_init__(self) -> None:
        schema.localize_key(self.name)  # a valid run-name stem
        if not self.arms or set(self.arms) - set(ARMS) or len(set(self.arms)) < len(self.arms):
            raise ValueError(f"arms must be distinct and among {ARMS}, got {self.arms}")
        if not self.seeds or len(set(self.seeds)) < len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        check_choice("scale", self.scale, ("quick", "default", "paper"))
        check_float("aux_weight (λ)", self.aux_weight, min=0)

    def run_name(self, arm: str, seed: int) -> str:
        return f"{self.name}-{arm}-s{seed}"

    @property
    def report_name(self) -> str:
        return f"{self.name}-{STUDY}"


def arm_config(study: MultiplicationStudy, arm: Arm, seed: int) -> TrainConfig:
    """The training config of one arm and seed at the study's scale."""
    if study.scale == "quick":
        digits, model = 2, ModelSpec(n_layers=2, d_model=32, n_heads=2, d_mlp=64, seed=seed)
        sizes = dict(n_train=1_000, n_test=200, batch_size=64, warmup_steps=5, eval_every=10,
                     eval_size=50, checkpoint_every=10, max_steps=30)
        icot = ICoT(tokens_per_stage=4, stage_steps=5, full_chain_steps=10)
    elif study.scale == "default":
        digits, model = 3, ModelSpec(n_layers=2, d_model=128, n_heads=4, d_mlp=512, seed=seed)
        sizes = dict(n_train=200_000, n_test=2_000, batch_size=256, warmup_steps=100,
                     eval_every=250, eval_size=500, checkpoint_every=250, max_steps=6_000)
        # 6 tokens at once (a whole partial product) collapsed a 2-layer d128 model to 0%
        # exact match that did not recover in 400 steps, with positions shifting under it:
        # remove 2 at a time, smoothed, keeping the later tokens' position ids
        icot = ICoT(tokens_per_stage=2, stage_steps=200, full_chain_steps=500, smoothing=1.0,
                    max_extra=2, keep_positions=True)
    else:  # Bai et al.'s configuration, for a GPU
        digits, model = 4, ModelSpec(n_layers=2, d_model=768, n_heads=4, d_mlp=3072, seed=seed)
        sizes = dict(n_train=808_000, n_test=1_000, batch_size=256, warmup_steps=500,
                     eval_every=1_000, eval_size=1_000, checkpoint_every=1_000,
                     max_steps=60_000)
        icot = ICoT(tokens_per_stage=8)  # per epoch, as in Deng et al.
    base = TrainConfig(task=TaskSpec(op="mul", digits_a=digits, digits_b=digits,
                                     format="reversed"),
                       model=model, lr=1e-3, target_accuracy=0.995, seed=seed, **sizes)
    if arm == "sft":
        return with_mode(base, "sft")
    if arm == "aux":
        return with_mode(base, "aux", aux_weight=study.aux_weight)
    config = replace(with_mode(base, "icot"), curriculum=icot)
    if study.scale == "default":  # the chain is gone after 3,500 steps; the rest is answers
        config = replace(config, max_steps=4_000, eval_size=300)
    return config


def train_arms(study: MultiplicationStudy, runs_dir: StrPath, ctx: Context | None = None
               ) -> dict[tuple[str, int], RunDir]:
    """Train every (arm, seed) into its run (finished ones are reused)."""
    return {(arm, seed): ensure_job(runs_dir, study.run_name(arm, seed),
                                    [arm_config(study, arm, seed)], ctx=ctx)
            for seed in study.seeds for arm in study.arms}


def run_study(study: MultiplicationStudy, runs_dir: StrPath, ctx: Context | None = None
              ) -> RunDir:
    """Train, evaluate and analyse every arm and seed, then write the report run."""
    ctx = ctx or Context()
    analysis = MultiplicationConfig(n=study.n_analysis)
    runs = {}
    for key, run in train_arms(study, runs_dir, ctx).items():
        runs[key] = run_on(run.dir, [EvaluateConfig(), analysis], runs_dir=runs_dir,
                           ctx=ctx).run
    return write_report(study, runs, runs_dir)


def _comparison(study: MultiplicationStudy, runs: dict[tuple[str, int], RunDir]
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparison, curves) tables over every arm and seed."""
    rows, curves = [], []
    for (arm, seed), run in runs.items():
        ev = run.load(schema.EVAL_SUMMARY, schema.EVALUATE)
        sums = run.load(schema.MUL_RUNNING_SUMS, schema.MULTIPLICATION)
        r2 = run.load(schema.MUL_FOURIER, schema.MULTIPLICATION)
        row = {"arm": arm, "seed": seed, "run": run.name, "exact_match": ev["exact_match"],
               "steps": run.stage_summary(schema.MODEL).get("steps")}
        row.update({f"acc_c{k}": v for k, v in enumerate(ev["digit_accuracy"])})
        row.update({f"mae_c{int(r.digit)}": float(r.mae) for r in sums.itertuples()})
        row.update({f"r2_{r.source}": float(r.median_r2) for r in r2.itertuples()
                    if r.model == "trained"})
        rows.append(row)
        curve = run.load(schema.TRAINING_CURVE, schema.MODEL)
        curves.append(curve.assign(arm=arm, seed=seed))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def write_report(study: MultiplicationStudy, runs: dict[tuple[str, int], RunDir],
                 runs_dir: StrPath) -> RunDir:
    """The report run: comparison and curves of every arm and seed (replaced if present)."""
    comparison, curves = _comparison(study, runs)
    report = RunDir.create(runs_dir, study.report_name, config={STUDY: schema.to_json(study)},
                           seeds={"seeds": list(study.seeds)}, overwrite=True)
    report.start_stage(STUDY, STUDY)
    report.save(schema.STUDY_COMPARISON, STUDY, comparison)
    report.save(schema.STUDY_CURVES, STUDY, curves)
    best = comparison.sort_values("exact_match", ascending=False).drop_duplicates("arm")
    summary = {"runs": sorted(r.name for r in runs.values()),
               "best": {r.arm: r.run for r in best.itertuples()},
               "exact_match": {arm: sorted(g["exact_match"].round(4).tolist())
                               for arm, g in comparison.groupby("arm")}}
    report.save_json(f"{STUDY}/{schema.STAGE_CONFIG}",
                     {"stage": STUDY, "config": schema.to_json(study)}, stage=STUDY)
    report.finish_stage(STUDY, summary)
    report.finish()
    return report


def save_to_zoo(study: MultiplicationStudy, runs_dir: StrPath, zoo: Path = ZOO_DIR
                ) -> list[str]:
    """Copy the best run of each arm (by held-out exact match) into the zoo as
    ``<name>-<arm>``; returns the zoo names written."""
    report = RunDir.open(Path(runs_dir) / study.report_name)
    written = []
    for arm, name in report.stage_summary(STUDY)["best"].items():
        target = zoo / f"{study.name}-{arm}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(runs_dir) / name, target,
                        ignore=shutil.ignore_patterns(schema.LOCK, schema.CHECKPOINT_DIR))
        written.append(target.name)
    return written
