"""Atomic writes, safetensors bytes and the run lock, outside any run."""

import os

import pytest
import torch

from arithinterp.disk import (
    RunBusyError,
    atomic_write_bytes,
    atomic_write_text,
    lock_run,
    safetensors_bytes,
)


def test_atomic_write_bytes_outside_run(tmp_path):
    target = tmp_path / "ckpt" / "deep" / "w.bin"
    atomic_write_bytes(target, b"abc")
    atomic_write_bytes(target, b"de")
    assert target.read_bytes() == b"de"
    assert os.listdir(target.parent) == ["w.bin"]


def test_atomic_write_text_encodes_and_replaces(tmp_path):
    target = tmp_path / "t.txt"
    atomic_write_text(target, "héllo")
    assert target.read_bytes() == "héllo".encode()
    atomic_write_text(target, "x", encoding="latin-1")
    assert target.read_text() == "x" and os.listdir(tmp_path) == ["t.txt"]


def test_safetensors_bytes_unshare_tied_and_viewed_tensors():
    from safetensors.torch import load

    base = torch.arange(6.0).reshape(2, 3)
    out = load(safetensors_bytes({"base": base, "tied": base, "row": base[1]}, {"k": "v"}))
    assert torch.equal(out["base"], base) and torch.equal(out["tied"], base)
    assert torch.equal(out["row"], base[1])


def test_a_second_lock_on_a_run_is_refused_until_the_first_is_released(tmp_path):
    first = lock_run(tmp_path)
    with pytest.raises(RunBusyError, match=f"pid {os.getpid()}"):
        lock_run(tmp_path)
    first.close()
    lock_run(tmp_path).close()
