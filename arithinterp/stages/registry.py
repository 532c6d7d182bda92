"""The registered stages by name: which stage module a config belongs to and the run folder it
writes. Every module here satisfies `base.Stage`; a job names its stages by `Stage.NAME`."""

from __future__ import annotations

from typing import Any

from arithinterp.stages import (
    evaluate,
    finetune,
    fourier,
    llm,
    llm_finetune,
    localize,
    model,
    modular,
    multiplication,
    probes,
    train,
)
from arithinterp.stages.base import Stage

STAGES: dict[str, Stage[Any]] = {stage.NAME: stage for stage in (
    model, train, evaluate, localize, probes, fourier, multiplication, finetune, modular, llm,
    llm_finetune)}


def stage_name(config: Any) -> str:
    """The registered stage a config belongs to."""
    for name, stage in STAGES.items():
        if type(config) is stage.Config:
            return name
    raise ValueError(f"{type(config).__name__} is not the config of a registered stage "
                     f"({', '.join(STAGES)})")


def stage_key(config: Any) -> str:
    """The run folder (and manifest key) a stage config writes."""
    return STAGES[stage_name(config)].key(config)
