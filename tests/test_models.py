"""Model building, checkpoints (never unpickled), determinism, the pretrained loader."""

import json
import pickle

import pytest
import torch
from conftest import BAD_CONFIG

from arithinterp.models import (
    ModelSpec,
    build_model,
    load_model,
    load_pretrained,
    resolve_device,
    save_model,
)


def test_same_seed_gives_identical_weights(tiny_spec, tiny_task):
    a = build_model(tiny_spec, tiny_task).state_dict()
    b = build_model(tiny_spec, tiny_task).state_dict()
    c = build_model(ModelSpec(**{**tiny_spec.__dict__, "seed": 1}), tiny_task).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_build_does_not_touch_global_rng(tiny_spec, tiny_task):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(tiny_spec, tiny_task)
    assert torch.equal(torch.rand(3), expected)


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


@pytest.mark.parametrize("kwargs, field", [
    ({"n_layers": 0}, "n_layers"), ({"d_model": 30, "n_heads": 4}, "divisible"),
    ({"act_fn": "tanh"}, "act_fn"), ({"normalization": "BN"}, "normalization"),
    ({"positional": "alibi"}, "positional"), ({"d_mlp": -1}, "d_mlp"),
])
def test_bad_model_specs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        ModelSpec(**kwargs)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("toaster")


def test_pretrained_loader_wraps_a_local_hf_model(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    ids = torch.tensor([AutoTokenizer.from_pretrained(tiny_gpt2_dir).encode("12+34=46")])
    with torch.no_grad():
        expected = hf(ids).logits

    loaded = load_pretrained(tiny_gpt2_dir)
    assert loaded.spec is None and loaded.task is None
    assert loaded.model.cfg.n_layers == 2 and loaded.model.cfg.n_heads == 4
    with torch.no_grad():
        got = loaded.model(ids)
    assert torch.allclose(got, expected, atol=1e-4)
    _, cache = loaded.model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_z"))
    assert cache["blocks.1.attn.hook_z"].shape == (1, ids.shape[1], 4, 8)
