"""Run directories: round trips, manifest, atomic writes, resume, locks."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from arithinterp import disk
from arithinterp.runs import RunDir
from arithinterp.schema import SCHEMA_VERSION

CONFIG = {"task": "add", "digits": 3, "layers": (2,)}
SEEDS = {"data": 0, "model": 1}


def make(root: Path, name: str = "r", **kw) -> RunDir:
    return RunDir.create(root, name, config=kw.pop("config", CONFIG), seeds=SEEDS, **kw)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_round_trips(tmp_path):
    run = make(tmp_path)
    run.save_json("cfg.json", {"a": [1, 2], "b": None}, stage="train")
    df = pd.DataFrame({"layer": [0, 1], "head": [3, 1], "effect": [0.5, -0.25]})
    run.save_table("localize/heads.parquet", df, stage="localize")
    tensors = {"w": torch.arange(6.0).reshape(2, 3), "t": torch.arange(4).reshape(2, 2).T}
    run.save_tensors("acts.safetensors", tensors, metadata={"note": "x"})

    again = RunDir.open(run.dir)
    assert again.load_json("cfg.json") == {"a": [1, 2], "b": None}
    loaded = again.load_table("localize/heads.parquet")
    pd.testing.assert_frame_equal(loaded, df)
    assert loaded.attrs["provenance"] == {"run": "r", "stage": "localize"}
    out = again.load_tensors("acts.safetensors")
    assert out.keys() == tensors.keys()
    for k, t in tensors.items():
        assert torch.equal(out[k], t)


def test_manifest_fields_and_artifacts(tmp_path):
    run = make(tmp_path)
    run.save_json("a/b.json", [1])
    run.path("notes.txt").write_text("hello")
    run.register_file("notes.txt", stage="s")
    m = json.loads((run.dir / "manifest.json").read_text())
    assert m == run.manifest
    assert m["schema_version"] == SCHEMA_VERSION
    assert m["status"] == "running" and not run.is_complete
    assert m["config"] == {"task": "add", "digits": 3, "layers": [2]}
    assert m["seeds"] == SEEDS
    assert m["package_versions"]["python"] and "torch" in m["package_versions"]
    assert m["artifacts"] == {
        "a/b.json": {"kind": "json", "stage": None, "bytes": (run.dir / "a/b.json").stat().st_size},
        "notes.txt": {"kind": "file", "stage": "s", "bytes": 5},
    }
    run.manifest["status"] = "complete"  # a copy: editing it changes nothing
    assert not run.is_complete


def test_atomic_writes_leave_no_temp_and_failures_change_nothing(tmp_path, monkeypatch):
    run = make(tmp_path)
    run.save_json("x.json", {"v": 1})
    run.save_table("t.parquet", pd.DataFrame({"a": [1]}))
    run.save_tensors("w.safetensors", {"w": torch.zeros(2)})
    assert temp_files(tmp_path) == []
    manifest_before = (run.dir / "manifest.json").read_bytes()

    with pytest.raises(TypeError):
        run.save_json("x.json", {"v": object()})
    with pytest.raises(TypeError):
        run.save_json("new.json", {1, 2})
    assert run.load_json("x.json") == {"v": 1}
    assert not (run.dir / "new.json").exists()

    # A crash between writing the temp file and renaming it must clean up and keep the old file.
    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(disk.os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        run.save_json("x.json", {"v": 2})
    monkeypatch.undo()
    assert run.load_json("x.json") == {"v": 1}
    assert (run.dir / "manifest.json").read_bytes() == manifest_before
    assert temp_files(tmp_path) == []


def test_refuse_to_overwrite_complete_run(tmp_path):
    run = make(tmp_path)
    run.save_json("old.json", 1)
    run.finish()
    assert run.is_complete
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make(tmp_path)
    fresh = make(tmp_path, overwrite=True, config={"other": 1})
    assert not fresh.is_complete and fresh.manifest["artifacts"] == {}
    assert not (fresh.dir / "old.json").exists()


def test_resume_incomplete_run(tmp_path):
    run = make(tmp_path)
    run.start_stage("train")
    run.save_tensors("w.safetensors", {"w": torch.ones(3)}, stage="train")
    run.finish_stage("train", summary={"loss": 0.1})
    run.start_stage("localize")  # crashed here
    run.close()  # the crashed process is gone, and its lock with it

    again = make(tmp_path)
    assert again.stage_done("train") and not again.stage_done("localize")
    assert not again.stage_done("never")
    assert again.manifest["stages"]["train"]["summary"] == {"loss": 0.1}
    assert "w.safetensors" in again.manifest["artifacts"]
    with pytest.raises(ValueError, match="stages not done"):
        again.finish()
    again.close()
    with pytest.raises(ValueError, match="config differs"):
        make(tmp_path, config={**CONFIG, "digits": 4})
    with pytest.raises(ValueError, match="never started"):
        again.finish_stage("probe")


def test_auto_names_do_not_collide(tmp_path):
    a = RunDir.create(tmp_path, config={}, seeds={})
    b = RunDir.create(tmp_path, config={}, seeds={})
    assert a.dir != b.dir and a.dir.parent == tmp_path


def test_a_second_writer_is_refused_until_the_first_is_done(tmp_path):
    first = make(tmp_path, "r")
    with pytest.raises(disk.RunBusyError, match="another process"):
        make(tmp_path, "r")
    first.close()
    second = make(tmp_path, "r")  # resumes: same config, unfinished
    assert second.dir == first.dir
    second.finish()
    with pytest.raises(FileExistsError, match="complete run"):
        make(tmp_path, "r")
    with pytest.raises(FileExistsError, match="unfinished run"):
        make(tmp_path, "s").close() or make(tmp_path, "s", resume=False)


CREATE = """
import sys
from arithinterp.runs import RunDir
root, name = sys.argv[1], (sys.argv[2] or None)
try:
    run = RunDir.create(root, name, config={}, seeds={})
    print("ok", run.dir, flush=True)
except (FileExistsError, ValueError) as e:
    print("refused", e, flush=True)
    sys.exit(0)
sys.stdin.readline()  # hold the run until the test says go
run.close()
"""


@pytest.mark.parametrize("name", ["same", ""])
def test_two_processes_never_share_a_run_directory(tmp_path, name):
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", CREATE, str(tmp_path), name],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.stdout.readline().split(" ", 1) for p in procs]  # both have tried
    for p in procs:
        p.communicate("\n", timeout=60)
    made = [path.strip() for status, path in results if status == "ok"]
    assert len(set(made)) == len(made)  # never the same folder twice
    if not name:
        assert len(made) == 2  # timestamped names: each gets its own
    else:
        assert len(made) == 1 and [s for s, _ in results].count("refused") == 1


@pytest.mark.parametrize("bad", ["/etc/x.json", "../x.json", "a/../../x.json", "", "manifest.json"])
def test_path_traversal_rejected(tmp_path, bad):
    run = make(tmp_path)
    with pytest.raises(ValueError, match="relpath"):
        run.save_json(bad, 1)
    with pytest.raises(ValueError, match="relpath"):
        run.path(bad)


def test_bad_names_and_configs_rejected(tmp_path):
    with pytest.raises(ValueError, match="name"):
        RunDir.create(tmp_path, "a/b", config={}, seeds={})
    with pytest.raises(ValueError, match="config"):
        RunDir.create(tmp_path, "c", config={"f": object()}, seeds={})
    assert not (tmp_path / "c").exists()
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a run"):
        RunDir.create(tmp_path, "occupied", config={}, seeds={}, overwrite=True)
    assert (tmp_path / "occupied" / "keep.txt").exists()


def test_tensors_sharing_storage_save_fine(tmp_path):
    run = make(tmp_path)
    base = torch.arange(12.0).reshape(3, 4)
    tensors = {"base": base, "tied": base, "view": base[1], "T": base.T, "empty": torch.zeros(0),
               "empty2": torch.zeros(0), "grad": torch.ones(2, requires_grad=True)}
    run.save_tensors("shared.safetensors", tensors)
    out = run.load_tensors("shared.safetensors")
    for k, t in tensors.items():
        assert torch.equal(out[k], t.detach()), k
    assert base.data_ptr() == tensors["tied"].data_ptr()  # inputs untouched
