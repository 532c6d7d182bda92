"""Manifests: what a new one records, and every check on reading one back."""

import json

import pytest

from arithinterp.manifest import KEYS, json_roundtrip, new_manifest, read_manifest
from arithinterp.runs import RunDir
from arithinterp.schema import SCHEMA_VERSION
from tests.test_runs import make


def test_open_rejects_bad_manifests(tmp_path):
    with pytest.raises(FileNotFoundError):
        RunDir.open(tmp_path)
    run = make(tmp_path)
    good = run.manifest
    mpath = run.dir / "manifest.json"

    mpath.write_text(json.dumps({**good, "schema_version": 99}))
    with pytest.raises(ValueError, match="99") as e:
        RunDir.open(run.dir)
    assert str(SCHEMA_VERSION) in str(e.value)
    mpath.write_text(json.dumps({**good, "schema_version": True}))
    with pytest.raises(ValueError, match="schema_version True"):
        RunDir.open(run.dir)
    mpath.write_text(json.dumps({**good, "surprise": 1}))
    with pytest.raises(ValueError, match="surprise"):
        RunDir.open(run.dir)
    mpath.write_text(json.dumps({k: v for k, v in good.items() if k != "stages"}))
    with pytest.raises(ValueError, match="stages"):
        RunDir.open(run.dir)
    mpath.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        RunDir.open(run.dir)


def test_a_new_manifest_is_running_and_reads_back(tmp_path):
    m = new_manifest({"task": "add"}, {"data": 0})
    assert set(m) == KEYS and m["schema_version"] == SCHEMA_VERSION
    assert m["status"] == "running" and m["created"] == m["updated"]
    assert m["stages"] == m["artifacts"] == {} and m["config"] == {"task": "add"}
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    assert read_manifest(tmp_path) == m
    (tmp_path / "manifest.json").write_text(json.dumps({**m, "status": "paused"}))
    with pytest.raises(ValueError, match="status must be one of"):
        read_manifest(tmp_path)


def test_json_roundtrip_stores_what_reads_back_and_names_the_field():
    assert json_roundtrip({"layers": (2, 3)}, "config") == {"layers": [2, 3]}
    with pytest.raises(ValueError, match="seeds must be json-serializable"):
        json_roundtrip({"s": object()}, "seeds")
