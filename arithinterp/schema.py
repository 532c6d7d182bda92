"""The schema of a run directory: every artifact path, table column and stored-config key.

A run is a folder with ``manifest.json`` and one folder per stage key: ``model/`` (the
checkpoint: trained here or copied in), ``evaluate/``, ``localize/<experiment>/``,
``probes/<name>/``, ``fourier/``, ... Each stage folder holds ``stage.json`` (the stage's
config) beside the artifacts named here. Writers (`runs.RunDir.save`) check a table's
columns against its artifact; readers (the CLI, the explorer, notebooks) find files only
through this module.

Stored configs are frozen dataclasses written with `to_json` and read back with
`from_json`, which refuses unknown keys and values of the wrong type, naming the field.
A field typed as a registered base class (`Registered`) stores its subclass under
``"kind"``, so a saved config names its training mode, curriculum or extra loss and replays it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

SCHEMA_VERSION = 2  # of manifest.json
CHECKPOINT_SCHEMA = 1  # of a checkpoint's config.json
MANIFEST = "manifest.json"
STAGE_CONFIG = "stage.json"
LOCK = ".lock"

# ---- stage keys (= folders of a run) ------------------------------------------------------
MODEL = "model"
EVALUATE = "evaluate"
FOURIER = "fourier"
MULTIPLICATION = "multiplication"
LOCALIZE = "localize"  # a family: localize/<experiment>
PROBES = "probes"  # a family: probes/<name>
FINETUNE = "finetune"  # a family: finetune/<name>
MODULAR = "modular"
SWEEP = "sweep"  # the one stage of a sweep's record run
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{what} name must be letters, digits, '_', '-' or '.', starting with a "
                         f"letter or digit, got {name!r}")
    return name


def localize_key(experiment: str) -> str:
    """Stage key of one localization experiment: 'localize/a1'."""
    return f"{LOCALIZE}/{_check_name(experiment, 'experiment')}"


def probes_key(name: str) -> str:
    """Stage key of one probe sweep: 'probes/digits'."""
    return f"{PROBES}/{_check_name(name, 'probe sweep')}"


def finetune_key(name: str) -> str:
    """Stage key of one fine-tuning comparison: 'finetune/sub'."""
    return f"{FINETUNE}/{_check_name(name, 'fine-tuning')}"


def stage_family(key: str) -> str:
    """'localize' for 'localize/a1', 'model' for 'model'."""
    return key.split("/", 1)[0]


def experiments(stage_keys, family: str) -> list[str]:
    """Names of the experiments of one family among stage keys: ['a1', 'carry2']."""
    return [k.split("/", 1)[1] for k in stage_keys if k.startswith(family + "/")]


# ---- artifacts ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Artifact:
    """One file of a stage folder; tables list their columns (``extra``: a regex that further
    allowed columns match, e.g. per-digit accuracies)."""

    file: str
    kind: Literal["json", "table", "tensors", "file"]
    columns: tuple[str, ...] = ()
    extra: str | None = None

    def at(self, stage_key: str) -> str:
        """Path of this artifact in the run, for one stage key."""
        return f"{stage_key}/{self.file}"

    def check_columns(self, columns) -> None:
        """Refuse a table whose columns are not this artifact's (named, both ways)."""
        if self.kind != "table":
            return
        cols = list(map(str, columns))
        missing = [c for c in self.columns if c not in cols]
        unknown = [c for c in cols if c not in self.columns
                   and not (self.extra and re.fullmatch(self.extra, c))]
        if missing or unknown:
            raise ValueError(f"table {self.file} does not match the schema: missing columns "
                             f"{missing}, unknown columns {unknown}")


# checkpoint files (a run's model/ folder is a checkpoint directory)
WEIGHTS = Artifact("model.safetensors", "tensors")
CHECKPOINT_CONFIG = Artifact("config.json", "json")
SOURCE = Artifact("source.json", "json")  # a model referenced by name (a pretrained LLM)
# a Hugging Face model folder, and the manifest of a cached dequantized copy of one
HF_CONFIG = Artifact("config.json", "json")
LLM_CACHE_MANIFEST = Artifact("arithinterp-cache.json", "json")
TRAIN_CONFIG = Artifact("train_config.json", "json")
TRAIN_LOG = Artifact("metrics.jsonl", "file")
TRAIN_FINAL = Artifact("metrics.json", "json")
EXTRA_WEIGHTS = Artifact("extra.safetensors", "tensors")  # trained parameters of extra losses
TRAINING_CURVE = Artifact("training_curve.parquet", "table", (
    "step", "loss", "lr", "exact_match", "digit", "digit_accuracy", "digit_loss"),
    extra="train_exact_match")  # exact match on training problems (absent in older runs)
# weight snapshots over training (TrainConfig.snapshot_every): model/snapshots/
SNAPSHOTS_DIR = "snapshots"


def snapshot_file(step: int) -> str:
    """File name of the weights at one step: 'step_000200.safetensors'."""
    return f"step_{step:06d}.safetensors"


def snapshot_step(file_name: str) -> int:
    """The step of a snapshot file name (inverse of `snapshot_file`)."""
    m = re.fullmatch(r"step_(\d+)\.safetensors", file_name)
    if m is None:
        raise ValueError(f"{file_name!r} is not a snapshot file name")
    return int(m[1])


def snapshot_files(folder: Path) -> dict[int, Path]:
    """The snapshot files of a snapshots folder by step, in step order ({} when none)."""
    if not folder.is_dir():
        return {}
    found = {snapshot_step(p.name): p for p in folder.glob("step_*.safetensors")}
    return dict(sorted(found.items()))


# training checkpoint (while a run trains): model/checkpoint/
CHECKPOINT_DIR = "checkpoint"
OPTIMIZER_STATE = "optimizer.pt"  # torch.save of plain tensors, read with weights_only=True
LOOP_STATE = "state.json"

# evaluate/
EVAL_SUMMARY = Artifact("summary.json", "json")
EVAL_EXAMPLES = Artifact("examples.parquet", "table", (
    "a", "b", "answer", "expected", "generated", "correct", "sequence_correct",
    "n_wrong_digits", "n_carries"))
EVAL_BY_CARRIES = Artifact("by_carries.parquet", "table", ("n_carries", "count", "exact_match"))

# localize/<experiment>/
PATCH_COLUMNS = ("method", "site", "by_pos", "direction", "layer", "head", "pos", "token",
                 "component", "value", "normalized", "effect", "metric")
PATCHING = Artifact("patching.parquet", "table", PATCH_COLUMNS)
PATCHING_VALUES = Artifact("patching.safetensors", "tensors")  # per-prompt values, see below
ATTRIBUTION = Artifact("attribution.parquet", "table", PATCH_COLUMNS)
ATTRIBUTION_VS_EXACT = Artifact("attribution_vs_exact.parquet", "table", (
    "grid", "n_cells", "pearson", "spearman", "k", "top_k_overlap", "max_abs_error",
    "peak_ratio"))
PATHS = Artifact("paths.parquet", "table", (
    "sender", "sender_kind", "sender_layer", "sender_head", "receiver", "receiver_input",
    "value", "std", "normalized", "direction", "metric"))
DLA = Artifact("dla.parquet", "table", ("component", "layer", "head", "kind", "value", "std"))
LOGIT_LENS = Artifact("logit_lens.parquet", "table", (
    "stage", "layer", "digit", "pos", "token", "target", "accuracy", "mean_rank", "mean_prob"))
OPERAND_ATTENTION = Artifact("operand_attention.parquet", "table", (
    "layer", "head", "component", "digit", "query_pos", "key", "key_pos", "attention", "std"))
RANKING = Artifact("ranking.parquet", "table", (
    "component", "kind", "layer", "head", "pos", "effect", "abs_effect", "rank"))
KNOCKOUT = Artifact("knockout.parquet", "table", (
    "condition", "components", "n_components", "method", "exact_match", "metric",
    "metric_drop"), extra=r"acc_c\d+")
ACTIVATION_CACHE = Artifact("cache.safetensors", "tensors")  # hook name -> [batch pos ...]
PAIRS = Artifact("pairs.safetensors", "tensors")  # the minimal pairs: see `pair_keys`
LOCALIZE_SUMMARY = Artifact("summary.json", "json")
LLM_EXAMPLES = Artifact("llm_examples.parquet", "table", (  # a pretrained LLM's answers
    "a", "b", "answer", "prompt", "generated", "parsed", "correct", "n_tokens"))
LLM_FOURIER = Artifact("llm_fourier.parquet", "table", (
    "source", "layer", "grouped_by", "freqs", "median_r2", "shuffled_r2", "n_features"))

# probes/<name>/
PROBE_SCORES = Artifact("scores.parquet", "table", (
    "probe", "target", "site", "layer", "head", "pos", "label", "group", "kind", "hook",
    "metric", "score", "shuffled", "random_model", "baseline", "selectivity", "cv_mean",
    "cv_std", "n_train", "n_test", "seed"))
PROBE_SUMMARY = Artifact("summary.parquet", "table", (
    "target", "site", "metric", "best_score", "best_layer", "best_head", "best_pos",
    "best_label", "shuffled", "random_model", "baseline", "selectivity", "first_layer",
    "first_pos", "first_label", "first_score"))
PROBE_PREDICTIONS = Artifact("predictions.parquet", "table", (
    "probe", "target", "site", "layer", "head", "pos", "label", "a", "b", "truth",
    "prediction"))
PROBE_WEIGHTS = Artifact("weights.safetensors", "tensors")  # {probe}.coef / .intercept / .classes

# fourier/
FOURIER_KEYS = ("source", "site", "layer", "pos", "label", "grouped_by")
FOURIER_SPECTRUM = Artifact("spectrum.parquet", "table", FOURIER_KEYS + (
    "frequency", "period", "components", "power", "fraction", "cumulative",
    "fraction_centered"))
FOURIER_R2 = Artifact("r2.parquet", "table", FOURIER_KEYS + (
    "freqs", "median_r2", "mean_r2", "n_features"))


# multiplication/ (the reverse-engineering views of a multiplication model)
MUL_PROBES = Artifact("probes.parquet", "table", PROBE_SCORES.columns)
MUL_RUNNING_SUMS = Artifact("running_sums.parquet", "table", (
    "digit", "target", "layer", "pos", "label", "r2", "mae", "shuffled_mae",
    "random_model_mae", "baseline_mae"))
MUL_ATTENTION_GRAPH = Artifact("attention_graph.parquet", "table", (
    "layer", "head", "component", "query_pos", "query_label", "key_pos", "key_label",
    "attention", "std"))
MUL_OPERAND_PAIRS = Artifact("operand_pairs.parquet", "table", (
    "layer", "head", "component", "query_pos", "query_label", "a_digit", "b_digit",
    "i_plus_j", "a_attention", "b_attention", "pair_attention"))
MUL_DIGIT_ATTRIBUTION = Artifact("digit_attribution.parquet", "table", (
    "digit", "component", "layer", "head", "kind", "value", "std"))
MUL_FOURIER = Artifact("fourier.parquet", "table", (
    "model", "source", "median_r2", "n_tables", "freqs"))
MUL_SUMMARY = Artifact("summary.json", "json")

# modular/ (the Fourier picture of a modular-arithmetic model, `arithinterp.grokking`)
MOD_LOGIT_SPECTRUM = Artifact("logit_spectrum.parquet", "table", (
    "frequency", "period", "fraction", "key"))
MOD_EMBEDDING_SPECTRUM = Artifact("embedding_spectrum.parquet", "table", (
    "frequency", "period", "components", "power", "fraction", "cumulative",
    "fraction_centered", "key"))
MOD_LOSSES = Artifact("losses.parquet", "table", ("logits", "split", "loss", "accuracy"))
MOD_NEURONS = Artifact("neurons.parquet", "table", ("neuron", "frequency", "fve", "key"))
MOD_PROGRESS = Artifact("progress.parquet", "table", (
    "step", "key_fraction", "gini_embedding", "gini_neuron_logit", "logits", "split", "loss",
    "accuracy"))
MOD_PROBES = Artifact("probes.parquet", "table", PROBE_SCORES.columns)
MOD_SUMMARY = Artifact("summary.json", "json")

# finetune/<name>/
FINETUNE_COMPARISON = Artifact("comparison.parquet", "table", (
    "arm", "draw", "seed", "components", "n_params", "seconds", "task", "role",
    "exact_before", "exact_after", "change"),
    extra=r"acc_c\d+|ppl_(before|after)")  # per-digit accuracy (tasks), perplexity (LLMs)
FINETUNE_CURVES = Artifact("curves.parquet", "table", (
    "step", "loss", "exact_match", "arm", "draw", "seed", "components"))
FINETUNE_WEIGHTS = Artifact("weights.safetensors", "tensors")
FINETUNE_SUMMARY = Artifact("summary.json", "json")

# a study's report run: study/
STUDY_COMPARISON = Artifact("comparison.parquet", "table", (
    "arm", "seed", "run", "exact_match", "steps"), extra=r"(acc|mae)_c\d+|r2_\w+")
STUDY_CURVES = Artifact("curves.parquet", "table", TRAINING_CURVE.columns + ("arm", "seed"),
                        extra=TRAINING_CURVE.extra)

# a sweep's record run: sweep/ (the varied values and the stages' metrics are further columns)
SWEEP_TRIALS = Artifact("trials.parquet", "table", (
    "trial", "run", "status", "error", "config_hash"), extra=r".+")


# ---- keys inside artifacts ----------------------------------------------------------------
def grid_key(site: str, by_pos: bool, direction: str) -> str:
    """Key of one patching grid: 'z_pos_denoise', 'resid_pre_pos_noise', 'z_all_denoise'."""
    return f"{site}_{'pos' if by_pos else 'all'}_{direction}"


# per-prompt patching values in PATCHING_VALUES, per grid key:
#   {grid}             [*grid, batch] patched metric
#   {grid}.normalized  [*grid, batch] (patched - corrupted_i) / (clean_i - corrupted_i)
#   {grid}.clean / {grid}.corrupted  [batch] unpatched metrics
# and the metadata entry {grid} -> json list of the grid's axis names.
def prompt_keys(grid: str) -> dict[str, str]:
    """Tensor keys of one grid's per-prompt values."""
    return {"values": grid, "normalized": f"{grid}.normalized", "clean": f"{grid}.clean",
            "corrupted": f"{grid}.corrupted"}


# the minimal pairs in PAIRS, per side ('clean', 'corrupt'): its tokens [batch pos] and
# the operands a, b of its problems [batch]
PAIR_SIDES = ("clean", "corrupt")


def pair_keys(side: str) -> dict[str, str]:
    """Tensor keys of one side of the minimal pairs in PAIRS: tokens, a, b."""
    if side not in PAIR_SIDES:
        raise ValueError(f"side must be one of {PAIR_SIDES}, got {side!r}")
    return {"tokens": f"{side}_tokens", "a": f"{side}_a", "b": f"{side}_b"}


# ---- configs as JSON ----------------------------------------------------------------------
class Registered:
    """Base of a family of configs stored with their ``kind`` (a subclass registry).

    Subclasses are frozen dataclasses with a ``kind`` class attribute; `register` adds one to
    its family. A field typed as the family's base class is written as ``{"kind": ...,
    fields}`` and read back as that subclass.
    """

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if Registered in cls.__bases__:  # a family's base: its own, empty registry
            cls.registry = {}

    @classmethod
    def register(cls, sub: type) -> type:
        """Class decorator: make `sub` readable under ``sub.kind``."""
        if not sub.kind or sub.kind in cls.registry:
            raise ValueError(f"{sub.__name__}: kind {sub.kind!r} is empty or taken")
        cls.registry[sub.kind] = sub
        return sub


def to_json(obj: Any) -> Any:
    """A config (frozen dataclass, possibly nested) as JSON-ready data; tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {"kind": obj.kind} if isinstance(obj, Registered) else {}
        out.update({f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        return out
    if isinstance(obj, tuple | list):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


def from_json(cls: Any, data: Any, where: str | None = None) -> Any:
    """Rebuild a config written by `to_json`; unknown keys, missing required keys and values
    of the wrong type raise ValueError naming the field (``where.field``)."""
    return _convert(cls, data, where or getattr(cls, "__name__", "config"))


def _fail(where: str, expected: str, value: Any) -> typing.NoReturn:
    raise ValueError(f"{where}: expected {expected}, got {value!r}")


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is not None:
            _fail(where, "null", value)
        return None
    if origin is Literal:
        options = typing.get_args(tp)
        if not any(value == o and type(value) is type(o) for o in options):
            _fail(where, f"one of {list(options)}", value)
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        alternatives = [a for a in args if a is not type(None)]
        if isinstance(value, dict):  # dataclasses: the one whose fields fit the keys first
            def misfit(a):
                if not (isinstance(a, type) and dataclasses.is_dataclass(a)):
                    return len(value) + 1
                return len(set(value) - {f.name for f in dataclasses.fields(a)} - {"kind"})
            alternatives.sort(key=misfit)
        for arg in alternatives:
            try:
                return _convert(arg, value, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            _fail(where, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            _fail(where, f"a list of {len(args)}", value)
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in
                     enumerate(zip(args, value, strict=True)))
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if not isinstance(value, dict):
            _fail(where, "an object", value)
        return {_convert(key_t, k, where): _convert(val_t, v, f"{where}.{k}")
                for k, v in value.items()}
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or issubclass(tp, Registered)):
        return _dataclass(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            _fail(where, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(where, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            _fail(where, "a string", value)
        return value
    raise TypeError(f"{where}: no JSON conversion for type {tp!r}")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A class's resolved annotations (resolving string annotations is slow; classes do not
    change while the program runs)."""
    return typing.get_type_hints(cls)


def _dataclass(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        _fail(where, "an object", value)
    data = dict(value)
    if isinstance(cls, type) and issubclass(cls, Registered):
        kind = data.pop("kind", cls.kind or None)
        family = cls.registry
        if kind not in family:
            _fail(f"{where}.kind", f"one of {sorted(family)}", kind)
        cls = family[kind]
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {sorted(fields)})")
    missing = [n for n, f in fields.items() if n not in data and
               f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    kwargs = {n: _convert(hints[n], v, f"{where}.{n}") for n, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e
