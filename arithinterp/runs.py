"""Run directories: the on-disk home of every result (manifest, json, parquet, safetensors).

A run is a folder holding ``manifest.json`` (schema version, provenance, the job's config,
seeds, stage statuses, artifact list; see `manifest`) beside its stage folders (see
`schema`). Every file is written atomically (`disk`) and the manifest last, so a crash never
leaves the manifest naming a half-written file. Table provenance lives in the parquet schema
metadata under the key ``arithinterp`` (``{"run": ..., "stage": ...}``); ``load_table``
returns it as ``df.attrs["provenance"]``. The runs of a folder are listed by `catalog`.

Creation is exclusive: a new run's folder is made with ``mkdir`` (never shared), and the
process that creates or resumes a run holds an advisory lock on it (``.lock``, released when
the process ends) until `close`, `finish` or `fail`; a second writer is refused. A stage
that raises is marked ``failed`` with its error, and so is the run. This module imports no
compute code of the package.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import safetensors.torch
import torch

from arithinterp import schema
from arithinterp.disk import (
    StrPath,
    atomic_write_bytes,
    atomic_write_text,
    lock_run,
    safetensors_bytes,
)
from arithinterp.manifest import json_roundtrip, new_manifest, now, read_manifest
from arithinterp.schema import LOCK, MANIFEST, Artifact


def _check_relpath(relpath: StrPath) -> str:
    p = PurePath(relpath)
    if p.is_absolute() or p.anchor or not p.parts or ".." in p.parts:
        raise ValueError(f"relpath must be relative and stay inside the run, got {relpath!r}")
    if p.as_posix() in (MANIFEST, LOCK):
        raise ValueError(f"relpath {p.as_posix()!r} is reserved")
    return p.as_posix()


class RunDir:
    """One run directory; build it with ``RunDir.create`` (locked) or ``RunDir.open``."""

    def __init__(self, directory: Path, manifest: dict[str, Any], lock=None) -> None:
        self.dir = Path(directory)
        self._m = manifest
        self._lock = lock

    @classmethod
    def create(cls, root: StrPath, name: str | None = None, *,
               config: dict[str, Any], seeds: dict[str, Any], overwrite: bool = False,
               resume: bool = True) -> RunDir:
        """Start ``root/name`` (default: UTC timestamp) and lock it; an unfinished run of that
        name with the same config resumes (unless ``resume=False``), a finished one is replaced
        only with ``overwrite=True``. A new folder is never shared with another process."""
        config = json_roundtrip(config, "config")
        seeds = json_roundtrip(seeds, "seeds")
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"runs folder {root} is a file")
        if name is not None and (name in ("", ".", "..") or PurePath(name).name != name):
            raise ValueError(f"name must be a single folder name, got {name!r}")
        root.mkdir(parents=True, exist_ok=True)
        if name is None:
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            for attempt in range(100):
                name = stamp if attempt == 0 else f"{stamp}-{secrets.token_hex(3)}"
                with contextlib.suppress(FileExistsError):
                    (root / name).mkdir()
                    return cls._new(root / name, config, seeds)
            raise FileExistsError(f"could not make a fresh run folder in {root}")
        directory = root / name
        try:
            directory.mkdir()
        except FileExistsError:
            return cls._existing(directory, config, seeds, overwrite=overwrite, resume=resume)
        return cls._new(directory, config, seeds)

    @classmethod
    def _new(cls, directory: Path, config: dict, seeds: dict, lock=None) -> RunDir:
        lock = lock or lock_run(directory)
        run = cls(directory, new_manifest(config, seeds), lock)
        run._write_manifest()
        return run

    @classmethod
    def _existing(cls, directory: Path, config: dict, seeds: dict, *, overwrite: bool,
                  resume: bool) -> RunDir:
        if not directory.is_dir():
            raise FileExistsError(f"{directory} exists and is not a run directory")
        if not (directory / MANIFEST).exists():
            # Never delete (overwrite) something that is not a run of ours; an empty folder is
            # someone's fresh mkdir (perhaps another process creating this run right now).
            raise FileExistsError(f"{directory} exists and is not a run directory")
        lock = lock_run(directory)
        try:
            run = cls(directory, read_manifest(directory), lock)  # unreadable: never deleted
            if overwrite:
                for child in directory.iterdir():
                    if child.name != LOCK:
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
                return cls._new(directory, config, seeds, lock)
            if run.is_complete:
                raise FileExistsError(f"{directory} holds a complete run; pass overwrite=True "
                                      "(--overwrite) to replace it, or pick another name")
            if not resume:
                raise FileExistsError(f"{directory} holds an unfinished run; resume it "
                                      "(--resume) or replace it (--overwrite)")
            for field, given in (("config", config), ("seeds", seeds)):
                if run._m[field] != given:
                    raise ValueError(f"cannot resume {directory}: the stored {field} "
                                     f"differs from the given {field}")
            run._m["status"] = "running"
            run._write_manifest()
            return run
        except BaseException:
            lock.close()
            raise

    @classmethod
    def open(cls, path: StrPath) -> RunDir:
        """Open an existing run (unlocked, for reading), validating its manifest."""
        return cls(Path(path), read_manifest(Path(path)))

    def lock(self) -> RunDir:
        """Take the run's lock (for adding stages to an existing run); returns self."""
        if self._lock is None:
            self._lock = lock_run(self.dir)
            self._m = read_manifest(self.dir)  # what the last writer left
        return self

    def close(self) -> None:
        """Release the lock (the run stays as it is)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunDir({str(self.dir)!r}, status={self._m['status']!r})"

    @property
    def name(self) -> str:
        """The run's folder name."""
        return self.dir.name

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the manifest."""
        return copy.deepcopy(self._m)

    @property
    def created(self) -> str:
        """When the run was started (ISO 8601, UTC)."""
        return self._m["created"]

    @property
    def is_complete(self) -> bool:
        """Whether ``finish()`` was called."""
        return self._m["status"] == "complete"

    @property
    def status(self) -> str:
        """'running', 'complete' or 'failed'."""
        return self._m["status"]

    def _write_manifest(self) -> None:
        self._m["updated"] = now()
        atomic_write_text(self.dir / MANIFEST, json.dumps(self._m, indent=2) + "\n")

    def _record(self, key: str, kind: str, stage: str | None) -> None:
        size = (self.dir / key).stat().st_size
        self._m["artifacts"][key] = {"kind": kind, "stage": stage, "bytes": size}
        self._write_manifest()

    def path(self, relpath: StrPath) -> Path:
        """Absolute path for a file other code writes itself (parent folders created)."""
        p = self.dir / _check_relpath(relpath)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def register_file(self, relpath: StrPath, stage: str | None = None,
                      kind: str = "file") -> None:
        """Record a file written through ``path()`` in the manifest."""
        key = _check_relpath(relpath)
        if not (self.dir / key).is_file():
            raise FileNotFoundError(f"cannot register {key!r}: no such file in {self.dir}")
        self._record(key, kind, stage)

    # ---- artifacts by schema ----------------------------------------------------------------
    def save(self, artifact: Artifact, stage: str, obj: Any,
             metadata: dict[str, str] | None = None) -> None:
        """Write one schema artifact of stage `stage` (a table's columns are checked)."""
        relpath = artifact.at(stage)
        if artifact.kind == "json":
            self.save_json(relpath, obj, stage=stage)
        elif artifact.kind == "table":
            artifact.check_columns(obj.columns)
            self.save_table(relpath, obj, stage=stage)
        elif artifact.kind == "tensors":
            self.save_tensors(relpath, obj, stage=stage, metadata=metadata)
        else:
            raise ValueError(f"{artifact.file} is a plain file: write it via path() and "
                             "register_file()")

    def load(self, artifact: Artifact, stage: str) -> Any:
        """Read one schema artifact of stage `stage`."""
        relpath = artifact.at(stage)
        if artifact.kind == "json":
            return self.load_json(relpath)
        if artifact.kind == "table":
            return self.load_table(relpath)
        if artifact.kind == "tensors":
            return self.load_tensors(relpath)
        return (self.dir / _check_relpath(relpath)).read_text(encoding="utf-8")

    def has(self, artifact: Artifact, stage: str) -> bool:
        """Whether the run holds this artifact of stage `stage`."""
        return (self.dir / artifact.at(stage)).is_file()

    def tensor_metadata(self, artifact: Artifact, stage: str) -> dict[str, str]:
        """The string metadata stored with a safetensors artifact."""
        with safetensors.safe_open(self.dir / _check_relpath(artifact.at(stage)), "pt") as f:
            return dict(f.metadata() or {})

    # ---- raw files --------------------------------------------------------------------------
    def save_json(self, relpath: StrPath, obj: Any, stage: str | None = None) -> None:
        """Save a json-serializable object."""
        key = _check_relpath(relpath)
        text = json.dumps(obj, indent=2) + "\n"  # before touching disk: a failure writes nothing
        atomic_write_text(self.dir / key, text)
        self._record(key, "json", stage)

    def load_json(self, relpath: StrPath) -> Any:
        """Load a json artifact."""
        return json.loads((self.dir / _check_relpath(relpath)).read_text(encoding="utf-8"))

    def save_table(self, relpath: StrPath, df: pd.DataFrame, stage: str | None = None) -> None:
        """Save a DataFrame as parquet, with run and stage in the schema metadata."""
        key = _check_relpath(relpath)
        table = pa.Table.from_pandas(df)
        provenance = json.dumps({"run": self.name, "stage": stage}).encode()
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"arithinterp": provenance})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(self.dir / key, sink.getvalue().to_pybytes())
        self._record(key, "table", stage)

    def load_table(self, relpath: StrPath) -> pd.DataFrame:
        """Load a parquet table; provenance (if any) in ``df.attrs["provenance"]``."""
        table = pq.read_table(self.dir / _check_relpath(relpath))
        df = table.to_pandas()
        if raw := (table.schema.metadata or {}).get(b"arithinterp"):
            df.attrs["provenance"] = json.loads(raw)
        return df

    def save_tensors(self, relpath: StrPath, tensors: dict[str, torch.Tensor],
                     stage: str | None = None, metadata: dict[str, str] | None = None) -> None:
        """Save tensors as safetensors (moved to cpu, contiguous, shared storage unshared)."""
        key = _check_relpath(relpath)
        atomic_write_bytes(self.dir / key, safetensors_bytes(tensors, metadata))
        self._record(key, "tensors", stage)

    def load_tensors(self, relpath: StrPath) -> dict[str, torch.Tensor]:
        """Load a safetensors artifact onto the cpu."""
        return safetensors.torch.load_file(self.dir / _check_relpath(relpath), device="cpu")

    def set_job(self, config: dict[str, Any], seeds: dict[str, Any]) -> None:
        """Replace the run's job config and seeds (when stages are added to it)."""
        self._m["config"] = json_roundtrip(config, "config")
        self._m["seeds"] = json_roundtrip(seeds, "seeds")
        self._m["status"] = "running"
        self._write_manifest()

    # ---- stages -----------------------------------------------------------------------------
    def start_stage(self, key: str, stage: str | None = None) -> None:
        """Mark stage `key` running (restarting it if it ran before); `stage` names its kind."""
        if not key:
            raise ValueError("stage key must be a non-empty string")
        self._m["stages"][key] = {"stage": stage or schema.stage_family(key),
                                  "status": "running", "started": now(), "finished": None}
        self._m["status"] = "running"
        self._write_manifest()

    def finish_stage(self, key: str, summary: dict[str, Any] | None = None) -> None:
        """Mark a started stage done, with an optional json-serializable summary."""
        stage = self._m["stages"].get(key)
        if stage is None:
            raise ValueError(f"stage {key!r} was never started")
        stage.update(status="done", finished=now())
        stage.pop("error", None)
        if summary is not None:
            stage["summary"] = json_roundtrip(summary, "summary")
        self._write_manifest()

    def fail_stage(self, key: str, error: str) -> None:
        """Mark stage `key` (and the run) failed with a one-line reason."""
        stage = self._m["stages"].setdefault(key, {"stage": schema.stage_family(key),
                                                   "started": now()})
        stage.update(status="failed", finished=now(), error=str(error).splitlines()[0]
                     if str(error) else "error")
        self._m["status"] = "failed"
        self._write_manifest()

    def stage_done(self, key: str) -> bool:
        """Whether the stage finished (a resumed job skips it)."""
        return self._m["stages"].get(key, {}).get("status") == "done"

    def stage_summary(self, key: str) -> dict[str, Any]:
        """The summary a finished stage recorded ({} when none)."""
        return copy.deepcopy(self._m["stages"].get(key, {}).get("summary") or {})

    def finish(self) -> None:
        """Mark the run complete (every started stage must be done) and release the lock."""
        if running := [n for n, s in self._m["stages"].items() if s["status"] != "done"]:
            raise ValueError(f"cannot finish {self.dir}: stages not done: {running}")
        self._m["status"] = "complete"
        self._write_manifest()
        self.close()

    def problems(self) -> list[str]:
        """What is wrong with a run that says it is complete: failed stages, missing or
        truncated artifacts (an empty list for a sound run)."""
        out = [f"stage {k} failed: {s.get('error', '?')}" for k, s in self._m["stages"].items()
               if s.get("status") == "failed"]
        for key, info in self._m["artifacts"].items():
            p = self.dir / key
            if not p.is_file():
                out.append(f"artifact {key} is missing")
            elif info.get("bytes") is not None and p.stat().st_size != info["bytes"]:
                out.append(f"artifact {key} has {p.stat().st_size} bytes, the manifest "
                           f"recorded {info['bytes']}")
        return out
