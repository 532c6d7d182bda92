"""Checkpoints: round trips, never unpickled, clear errors, runs and zoo names."""

import json
import pickle

import pytest
import torch

from arithinterp.checkpoints import load_model, save_model
from arithinterp.models import ModelSpec, build_model


@pytest.mark.parametrize("spec", [
    ModelSpec(n_layers=1, d_model=16, n_heads=2, attn_only=True, normalization=None),
    ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=48, normalization="RMS",
              positional="rotary", act_fn="relu"),
])
def test_checkpoint_round_trip_reproduces_logits(tmp_path, spec, tiny_task):
    model = build_model(spec, tiny_task).eval()
    save_model(model, spec, tiny_task, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.spec == spec and loaded.task == tiny_task
    tokens = torch.randint(0, 20, (3, tiny_task.seq_len))
    assert torch.equal(model(tokens), loaded.model(tokens))
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"model.safetensors", "config.json"}


def test_pickle_checkpoint_is_refused_and_never_runs(tmp_path, tiny_model, tiny_spec, tiny_task):
    ckpt = tmp_path / "ckpt"
    save_model(tiny_model, tiny_spec, tiny_task, ckpt)
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    # a torch.save-style pickle where the safetensors file should be
    (ckpt / "model.safetensors").write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_model(ckpt)
    torch.save({"w": Payload()}, ckpt / "model.safetensors")
    with pytest.raises(ValueError, match="never unpickled"):
        load_model(ckpt)
    assert not marker.exists()


def test_corrupt_or_mismatched_checkpoints_give_clear_errors(tmp_path, tiny_model, tiny_spec,
                                                             tiny_task):
    ckpt = tmp_path / "ckpt"
    save_model(tiny_model, tiny_spec, tiny_task, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())

    (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ValueError, match="not a valid safetensors"):
        load_model(ckpt)

    save_model(tiny_model, tiny_spec, tiny_task, ckpt)
    bigger = {**cfg, "model": {**cfg["model"], "d_model": 64}}
    (ckpt / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(ValueError, match="does not match"):
        load_model(ckpt)

    (ckpt / "config.json").write_text(json.dumps({**cfg, "model": {**cfg["model"], "wat": 1}}))
    with pytest.raises(ValueError, match="unknown keys \\['wat'\\]"):
        load_model(ckpt)
    (ckpt / "config.json").write_text(json.dumps({**cfg, "schema_version": 7}))
    with pytest.raises(ValueError, match="schema_version 7"):
        load_model(ckpt)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(ckpt)
    with pytest.raises(ValueError, match="neither a checkpoint directory nor a zoo model"):
        load_model(tmp_path / "nowhere")


def test_checkpoint_config_checks_name_what_is_wrong(tmp_path, tiny_model, tiny_spec, tiny_task):
    ckpt = tmp_path / "ckpt"
    save_model(tiny_model, tiny_spec, tiny_task, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    for bad, message in (({**cfg, "schema_version": True}, "schema_version True"),
                         ({**cfg, "extra": 1}, r"unknown keys \['extra'\]"),
                         ({k: v for k, v in cfg.items() if k != "vocab"},
                          r"missing keys \['vocab'\]"),
                         ({**cfg, "task": {**cfg["task"], "digits_a": "2"}}, "digits_a"),
                         ({**cfg, "vocab": cfg["vocab"][:-1]}, "vocabulary differs")):
        (ckpt / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            load_model(ckpt)


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path, tiny_spec, tiny_task):
    model = build_model(tiny_spec, tiny_task)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    save_model(model, tiny_spec, tiny_task, tmp_path / "nan")
    with pytest.raises(ValueError, match="non-finite weights .* in 1 tensors"):
        load_model(tmp_path / "nan")


def test_load_model_reads_a_run_its_checkpoint_or_a_zoo_name(demo_runs):
    runs, trained = demo_runs
    from_run = load_model(trained)
    from_folder = load_model(trained / "model")
    assert from_run.path == from_folder.path == trained / "model"
    assert load_model("add3-reversed").source == "zoo:add3-reversed"
    with pytest.raises(ValueError, match="neither a checkpoint directory"):
        load_model(runs)  # a folder of runs is none of them
