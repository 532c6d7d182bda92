"""Run directories: the on-disk home of every result (manifest, json, parquet, safetensors).

A run is a folder holding ``manifest.json`` (schema version, provenance, config, seeds,
stage statuses, artifact list) beside its artifacts. Every file is written atomically
and the manifest last, so a crash never leaves the manifest naming a half-written file.
Table provenance lives in the parquet schema metadata under the key ``arithinterp``
(``{"run": ..., "stage": ...}``); ``load_table`` returns it as ``df.attrs["provenance"]``.
One process writes a run at a time. This module imports no compute code of the package.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import secrets
import shutil
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import safetensors.torch
import torch

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
_KEYS = {"schema_version", "created", "updated", "status", "package_versions", "git_commit",
         "seeds", "config", "stages", "artifacts"}
# importlib.metadata normalizes "_" and "-", so these are also the distribution names.
_DISTS = ("arithinterp", "torch", "transformer_lens", "numpy", "pandas")
StrPath = str | os.PathLike[str]


def atomic_write_bytes(path: StrPath, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hand-made name opened with "xb" (not mkstemp) so the file gets the umask's mode.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: StrPath, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode(encoding))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json_roundtrip(obj: Any, field: str) -> Any:
    # Stored as it will read back (tuples become lists), so resume comparisons are fair.
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{field} must be json-serializable: {e}") from e


def _package_versions() -> dict[str, str]:
    versions = {}
    for dist in _DISTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions | {"python": platform.python_version()}


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    # An installed copy in site-packages would report the commit of whatever repo holds the venv.
    if "site-packages" in here.parts:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _read_manifest(directory: Path) -> dict[str, Any]:
    file = directory / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {directory}: not a run directory")
    try:
        m = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(m, dict):
        raise ValueError(f"{file} must hold a JSON object, found {type(m).__name__}")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{file} has schema_version {m.get('schema_version')!r}; this "
                         f"arithinterp reads schema_version {SCHEMA_VERSION}")
    if set(m) != _KEYS:
        raise ValueError(f"{file} does not match schema {SCHEMA_VERSION}: unknown keys "
                         f"{sorted(set(m) - _KEYS)}, missing keys {sorted(_KEYS - set(m))}")
    if m["status"] not in ("running", "complete"):
        raise ValueError(f"{file}: status must be 'running' or 'complete', got {m['status']!r}")
    for key in ("seeds", "config", "stages", "artifacts", "package_versions"):
        if not isinstance(m[key], dict):
            raise ValueError(f"{file}: {key} must be an object")
    return m


def _check_relpath(relpath: StrPath) -> str:
    p = PurePath(relpath)
    if p.is_absolute() or p.anchor or not p.parts or ".." in p.parts:
        raise ValueError(f"relpath must be relative and stay inside the run, got {relpath!r}")
    if p.as_posix() == MANIFEST:
        raise ValueError(f"relpath {MANIFEST!r} is reserved for the manifest")
    return p.as_posix()


class RunDir:
    """One run directory; build it with ``RunDir.create`` or ``RunDir.open``."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self._m = manifest

    @classmethod
    def create(cls, root: StrPath, name: str | None = None, *,
               config: dict[str, Any], seeds: dict[str, Any], overwrite: bool = False) -> RunDir:
        """Start ``root/name`` (default: UTC timestamp); resume it if running, unless overwrite."""
        config = _json_roundtrip(config, "config")
        seeds = _json_roundtrip(seeds, "seeds")
        root = Path(root)
        if name is None:
            name = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            if (root / name).exists():
                name = f"{name}-{secrets.token_hex(3)}"
        elif name in ("", ".", "..") or PurePath(name).name != name:
            raise ValueError(f"name must be a single folder name, got {name!r}")
        directory = root / name
        if (directory / MANIFEST).exists():
            run = cls.open(directory)  # an invalid manifest raises: never delete what we can't read
            if run.is_complete and not overwrite:
                raise FileExistsError(f"{directory} holds a complete run; pass overwrite=True "
                                      "to replace it, or pick another name")
            if overwrite:
                shutil.rmtree(directory)
            else:
                for field, given in (("config", config), ("seeds", seeds)):
                    if run._m[field] != given:
                        raise ValueError(f"cannot resume {directory}: the stored {field} "
                                         f"differs from the given {field}")
                run._write_manifest()
                return run
        elif directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            # Never delete (overwrite) something that is not a run of ours.
            raise FileExistsError(f"{directory} exists and is not a run directory")
        directory.mkdir(parents=True, exist_ok=True)
        now = _now()
        run = cls(directory, {
            "schema_version": SCHEMA_VERSION, "created": now, "updated": now,
            "status": "running", "package_versions": _package_versions(),
            "git_commit": _git_commit(), "seeds": seeds, "config": config,
            "stages": {}, "artifacts": {},
        })
        run._write_manifest()
        return run

    @classmethod
    def open(cls, path: StrPath) -> RunDir:
        """Open an existing run, validating its manifest."""
        return cls(Path(path), _read_manifest(Path(path)))

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
    def is_complete(self) -> bool:
        """Whether ``finish()`` was called."""
        return self._m["status"] == "complete"

    def _write_manifest(self) -> None:
        self._m["updated"] = _now()
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

    def register_file(self, relpath: StrPath, stage: str | None = None) -> None:
        """Record a file written through ``path()`` in the manifest."""
        key = _check_relpath(relpath)
        if not (self.dir / key).is_file():
            raise FileNotFoundError(f"cannot register {key!r}: no such file in {self.dir}")
        self._record(key, "file", stage)

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
        out: dict[str, torch.Tensor] = {}
        seen: set[int] = set()
        for k, t in tensors.items():
            t = t.detach().to("cpu").contiguous()
            # safetensors refuses tensors that share storage (tied weights, views of one buffer).
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen or t.numel() * t.element_size() != t.untyped_storage().nbytes():
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
            out[k] = t
        atomic_write_bytes(self.dir / key, safetensors.torch.save(out, metadata=metadata))
        self._record(key, "tensors", stage)

    def load_tensors(self, relpath: StrPath) -> dict[str, torch.Tensor]:
        """Load a safetensors artifact onto the cpu."""
        return safetensors.torch.load_file(self.dir / _check_relpath(relpath), device="cpu")

    def start_stage(self, name: str) -> None:
        """Mark a stage running (restarting it if it ran before)."""
        if not name:
            raise ValueError("stage name must be a non-empty string")
        self._m["stages"][name] = {"status": "running", "started": _now(), "finished": None}
        self._write_manifest()

    def finish_stage(self, name: str, summary: dict[str, Any] | None = None) -> None:
        """Mark a started stage done, with an optional json-serializable summary."""
        stage = self._m["stages"].get(name)
        if stage is None:
            raise ValueError(f"stage {name!r} was never started")
        stage.update(status="done", finished=_now())
        if summary is not None:
            stage["summary"] = _json_roundtrip(summary, "summary")
        self._write_manifest()

    def stage_done(self, name: str) -> bool:
        """Whether the stage finished (a resumed pipeline skips it)."""
        return self._m["stages"].get(name, {}).get("status") == "done"

    def finish(self) -> None:
        """Mark the run complete; every started stage must be done."""
        if running := [n for n, s in self._m["stages"].items() if s["status"] != "done"]:
            raise ValueError(f"cannot finish {self.dir}: stages still running: {running}")
        self._m["status"] = "complete"
        self._write_manifest()


def is_run(path: StrPath) -> bool:
    """Whether `path` is a run directory (holds a manifest)."""
    return (Path(path) / MANIFEST).is_file()


def list_runs(root: StrPath, include_incomplete: bool = False) -> list[RunDir]:
    """Runs under ``root`` sorted by creation time; complete ones only unless asked."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = []
    for d in root.iterdir():
        try:
            run = RunDir.open(d)
        except (OSError, ValueError):  # junk folders and stray files are not runs
            continue
        if include_incomplete or run.is_complete:
            runs.append(run)
    return sorted(runs, key=lambda r: (str(r._m["created"]), r.name))
