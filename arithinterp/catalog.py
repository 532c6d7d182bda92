"""The runs of a folder: every one found, readable or not, with what is wrong with it
(`scan_runs`), and the sound ones (`list_runs`). This module imports no compute code of the
package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arithinterp.disk import StrPath
from arithinterp.runs import RunDir
from arithinterp.schema import MANIFEST


def is_run(path: StrPath) -> bool:
    """Whether `path` is a run directory (holds a manifest)."""
    return (Path(path) / MANIFEST).is_file()


@dataclass(frozen=True)
class RunEntry:
    """One folder of a runs directory: the run (None when unreadable), its status and
    what is wrong with it (empty for a sound run)."""

    path: Path
    run: RunDir | None
    status: str
    problems: tuple[str, ...]


def scan_runs(root: StrPath) -> list[RunEntry]:
    """Every folder of `root` that holds a manifest, readable or not, flagged with problems;
    sorted by creation time (unreadable ones last)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"runs folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"runs folder {root} is a file, not a folder")
    entries = []
    for d in sorted(root.iterdir()):
        if not (d / MANIFEST).is_file():
            continue
        try:
            run = RunDir.open(d)
        except (OSError, ValueError) as e:
            entries.append(RunEntry(d, None, "invalid", (str(e).splitlines()[0],)))
            continue
        entries.append(RunEntry(d, run, run.status, tuple(run.problems())))
    return sorted(entries, key=lambda e: (e.run is None, str(e.run.created) if e.run else "",
                                          e.path.name))


def list_runs(root: StrPath, include_incomplete: bool = False) -> list[RunDir]:
    """Runs under ``root`` sorted by creation time: complete and sound ones, or with
    ``include_incomplete`` every readable one (unfinished, failed or damaged too; see
    `scan_runs` for what is wrong with them)."""
    if not Path(root).is_dir():
        return []
    return [e.run for e in scan_runs(root) if e.run is not None
            and (include_incomplete or (e.run.is_complete and not e.problems))]
