"""Stage `model`: put an existing model into the run's ``model/`` folder.

The source is a zoo name, a run directory (its model) or a checkpoint folder; its
checkpoint, training config, metrics and training curve are copied, so the run holds its
own model and never points at another folder. A zoo name whose folder is missing is
trained with its recipe, into this run. A pretrained LLM (``llm:smollm2``, ``hf:<hub name or
folder>``) is too large to copy: the run records its source (``model/source.json``) and
loads it from there (the embedded one from its cached dequantized copy).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

from arithinterp import schema
from arithinterp.checkpoints import describe_source, load_model, resolve_model_path
from arithinterp.pretrained import check_llm_source, is_llm_source, load_llm
from arithinterp.runs import RunDir
from arithinterp.stages import train as train_stage
from arithinterp.stages.base import Context
from arithinterp.training.recipes import unshipped_recipe, zoo_recipe

NAME = "model"
COPIED = (schema.CHECKPOINT_CONFIG, schema.WEIGHTS, schema.TRAIN_CONFIG, schema.TRAIN_FINAL,
          schema.EXTRA_WEIGHTS)


@dataclass(frozen=True)
class ModelSource:
    """Which model the run analyses: a zoo name, a run directory or a checkpoint folder."""

    source: str = "add3-reversed"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"source must name a zoo model, a run or a folder, got "
                             f"{self.source!r}")

    def check(self) -> None:
        """Refuse a source that is neither on disk nor a recipe, before a run exists."""
        if is_llm_source(self.source):
            check_llm_source(self.source)
            return
        if unshipped_recipe(self.source) is not None:
            return  # trained with its recipe
        try:
            resolve_model_path(self.source)
        except ValueError:
            zoo_recipe(self.source)  # raises with the known names


Config = ModelSource


def key(config: ModelSource) -> str:
    return schema.MODEL


def run(config: ModelSource, run: RunDir, ctx: Context) -> dict:
    """Copy (or, for a missing zoo model, train) the model into the run."""
    config.check()
    if is_llm_source(config.source):
        loaded = load_llm(config.source)  # a source that does not load fails here
        run.save(schema.SOURCE, schema.MODEL, {"source": config.source})
        f = loaded.facts
        return {"source": config.source, "family": f.family, "n_layers": f.n_layers,
                "n_heads": f.n_heads, "n_kv_heads": f.n_kv_heads}
    recipe = unshipped_recipe(config.source)
    if recipe is not None:
        summary = train_stage.run(recipe, run, ctx)
        return {**summary, "source": f"recipe:{config.source}"}
    path = resolve_model_path(config.source)
    load_model(path)  # a broken checkpoint fails here, before anything is copied
    for artifact in COPIED:
        if (path / artifact.file).is_file():
            target = run.path(artifact.at(schema.MODEL))
            shutil.copyfile(path / artifact.file, target)
            run.register_file(artifact.at(schema.MODEL), schema.MODEL, artifact.kind)
    curve = path / schema.TRAINING_CURVE.file
    if curve.is_file():
        shutil.copyfile(curve, run.path(schema.TRAINING_CURVE.at(schema.MODEL)))
        run.register_file(schema.TRAINING_CURVE.at(schema.MODEL), schema.MODEL, "table")
    elif (path / schema.TRAIN_LOG.file).is_file():
        rows = [json.loads(line) for line in (path / schema.TRAIN_LOG.file).read_text()
                .splitlines()]
        run.save(schema.TRAINING_CURVE, schema.MODEL, train_stage.curve_table(rows))
    return {"source": describe_source(path)}
