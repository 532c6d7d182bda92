"""Files written so that a crash or a second writer never leaves a half-written one: atomic
writes (a temp file in the same folder, then ``os.replace``), tensors as safetensors bytes,
and the exclusive advisory lock a writer holds on a run folder. This module imports no
compute code of the package.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

import safetensors.torch
import torch

from arithinterp.schema import LOCK

StrPath = str | os.PathLike[str]


class RunBusyError(FileExistsError):
    """Another process holds the run's lock."""


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


def safetensors_bytes(tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> bytes:
    """Tensors as safetensors bytes (cpu, contiguous, shared storage unshared)."""
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
    return safetensors.torch.save(out, metadata=metadata)


def lock_run(directory: Path):
    """An exclusive, non-blocking advisory lock on the run folder (``.lock``, holding the
    writer's pid), released when the returned file is closed or the process ends."""
    f = open(directory / LOCK, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise RunBusyError(f"{directory} is being written by another process (pid {holder}); "
                           "wait for it or pick another name") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f
