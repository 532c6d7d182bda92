"""Listing a runs folder: sound runs, and what is wrong with the others."""

import json

import pytest
import torch

from arithinterp.catalog import is_run, list_runs, scan_runs
from tests.test_runs import make


def test_list_runs_hides_incomplete_and_ignores_junk(tmp_path):
    first = make(tmp_path, "first")
    first.finish()
    make(tmp_path, "pending").close()
    second = make(tmp_path, "second")
    second.finish()
    (tmp_path / "junk").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("[]")
    (tmp_path / "stray.txt").write_text("x")

    assert [r.name for r in list_runs(tmp_path)] == ["first", "second"]
    assert [r.name for r in list_runs(tmp_path, include_incomplete=True)] == [
        "first", "pending", "second"]
    assert list_runs(tmp_path / "missing") == []


def test_scan_flags_broken_runs_with_the_reason(tmp_path):
    ok = make(tmp_path, "ok")
    ok.save_json("a/x.json", {"v": 1})
    ok.finish()
    gone = make(tmp_path, "gone")
    gone.save_json("a/x.json", {"v": 1})
    gone.finish()
    (gone.dir / "a" / "x.json").unlink()
    cut = make(tmp_path, "cut")
    cut.save_tensors("w.safetensors", {"w": torch.zeros(100)})
    cut.finish()
    (cut.dir / "w.safetensors").write_bytes(b"12")
    failed = make(tmp_path, "failed")
    failed.start_stage("train")
    failed.fail_stage("train", "ValueError: loss is NaN\nsecond line")
    failed.close()
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "manifest.json").write_text(json.dumps(
        {**ok.manifest, "schema_version": 7}))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "manifest.json").write_text("{")

    entries = {e.path.name: e for e in scan_runs(tmp_path)}
    assert entries["ok"].problems == () and entries["ok"].status == "complete"
    assert entries["gone"].problems == ("artifact a/x.json is missing",)
    assert "recorded" in entries["cut"].problems[0]
    assert entries["failed"].status == "failed"
    assert entries["failed"].problems == ("stage train failed: ValueError: loss is NaN",)
    assert entries["future"].status == "invalid" and "schema_version 7" in \
        entries["future"].problems[0]
    assert entries["garbage"].status == "invalid" and "JSON" in entries["garbage"].problems[0]
    assert [r.name for r in list_runs(tmp_path)] == ["ok"]
    assert [r.name for r in list_runs(tmp_path, include_incomplete=True)] == [
        "ok", "gone", "cut", "failed"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_runs(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        scan_runs(tmp_path / "file")


def test_is_run_means_a_manifest_is_there(tmp_path):
    assert not is_run(tmp_path)
    assert is_run(make(tmp_path, "r").dir)
