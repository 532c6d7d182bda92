"""A run's manifest: its keys and statuses, the provenance a new one records (package
versions, git commit), and reading one back with every check (schema version, keys, types).
This module imports no compute code of the package.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from arithinterp.schema import MANIFEST, SCHEMA_VERSION

KEYS = {"schema_version", "created", "updated", "status", "package_versions", "git_commit",
        "seeds", "config", "stages", "artifacts"}
STATUSES = ("running", "complete", "failed")
# importlib.metadata normalizes "_" and "-", so these are also the distribution names.
_DISTS = ("arithinterp", "torch", "transformer_lens", "numpy", "pandas")


def now() -> str:
    """The current UTC time, as the manifest stores it (ISO 8601)."""
    return datetime.now(UTC).isoformat()


def json_roundtrip(obj: Any, field: str) -> Any:
    """`obj` as it will read back from json (tuples become lists); a ValueError naming
    `field` when it is not json-serializable."""
    # Stored as it will read back, so resume comparisons are fair.
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


def new_manifest(config: dict[str, Any], seeds: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a run just started: running, no stages or artifacts yet."""
    stamp = now()
    return {"schema_version": SCHEMA_VERSION, "created": stamp, "updated": stamp,
            "status": "running", "package_versions": _package_versions(),
            "git_commit": _git_commit(), "seeds": seeds, "config": config,
            "stages": {}, "artifacts": {}}


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the run in `directory`, checked against this schema version."""
    file = directory / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f"no {MANIFEST} in {directory}: not a run directory")
    try:
        m = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(m, dict):
        raise ValueError(f"{file} must hold a JSON object, found {type(m).__name__}")
    version = m.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise ValueError(f"{file} has schema_version {version!r}; this arithinterp reads "
                         f"schema_version {SCHEMA_VERSION}")
    if set(m) != KEYS:
        raise ValueError(f"{file} does not match schema {SCHEMA_VERSION}: unknown keys "
                         f"{sorted(set(m) - KEYS)}, missing keys {sorted(KEYS - set(m))}")
    if m["status"] not in STATUSES:
        raise ValueError(f"{file}: status must be one of {STATUSES}, got {m['status']!r}")
    for key in ("seeds", "config", "stages", "artifacts", "package_versions"):
        if not isinstance(m[key], dict):
            raise ValueError(f"{file}: {key} must be an object")
    return m
