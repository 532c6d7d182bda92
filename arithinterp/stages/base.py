"""What every stage shares: what a stage module provides (`Stage`), the context it runs in
and the model of the run it writes into."""

from __future__ import annotations

from dataclasses import Field, dataclass
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from arithinterp import schema
from arithinterp.checkpoints import load_model
from arithinterp.models import LoadedModel
from arithinterp.pretrained import load_llm
from arithinterp.runs import RunDir


@dataclass(frozen=True)
class Context:
    """How a job runs, as opposed to what it computes: not part of any stage's config."""

    device: str = "auto"
    progress: bool = True


@runtime_checkable
class StageConfig(Protocol):
    """A stage's config: a frozen dataclass, written as json into the run and read back equal."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


C = TypeVar("C", bound=StageConfig)


@runtime_checkable
class Stage(Protocol[C]):
    """What a stage module provides (a module satisfies a protocol, PEP 544): its name in a
    job, its config class, the run folder a config writes and the computation."""

    NAME: str
    Config: type[C]

    def key(self, config: C) -> str:
        """The run folder (and manifest key) the stage writes, e.g. 'localize/a1'."""
        ...

    def run(self, config: C, run: RunDir, ctx: Context) -> dict[str, Any]:
        """Compute into ``run`` and return the stage's summary (kept in the manifest)."""
        ...


def run_model(run: RunDir, ctx: Context) -> LoadedModel:
    """The model the run's ``model`` stage put into the run."""
    if not run.stage_done("model"):
        raise ValueError(f"run {run.dir} has no finished model stage: add a model or train "
                         "stage before this one")
    if run.has(schema.SOURCE, schema.MODEL):  # a pretrained LLM, referenced by its source
        return load_llm(run.load(schema.SOURCE, schema.MODEL)["source"], device=ctx.device)
    return load_model(run.dir, device=ctx.device)


def need_task(loaded: LoadedModel, what: str) -> None:
    """Refuse a model that records no arithmetic task (a pretrained LLM) for `what`."""
    if loaded.task is None:
        raise ValueError(f"{what} needs a model trained on an arithmetic task; "
                         f"{loaded.source} records none")
