"""Model building, checkpoints (never unpickled), determinism, the pretrained loader."""

import json
import pickle

import pytest
import torch

from arithinterp.models import (
    ModelSpec,
    build_model,
    load_model,
    resolve_device,
    save_model,
)
from tests.conftest import BAD_CONFIG


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


def test_facts_and_readout_describe_the_model(tiny_model, tiny_spec, tiny_task):
    from arithinterp.models import facts, readout, run_readout

    f = facts(tiny_model)
    assert (f.family, f.n_layers, f.n_heads, f.n_kv_heads, f.d_model, f.d_head, f.d_mlp) == \
        ("native", 2, 4, 4, 32, 8, 64)
    assert (f.d_vocab, f.n_ctx, f.normalization, f.positional) == \
        (tiny_task.vocab.size, tiny_task.seq_len, "LN", "standard")
    tokens = torch.randint(0, 20, (2, tiny_task.seq_len))
    _, cache = tiny_model.run_with_cache(tokens)
    torch.testing.assert_close(run_readout(tiny_model, cache["blocks.1.hook_resid_post"]),
                               tiny_model(tokens), atol=1e-5, rtol=0)
    out = readout(tiny_model)
    assert out.norm == "LN" and out.W_U.shape == (32, tiny_task.vocab.size)


def test_load_model_reads_a_run_its_checkpoint_or_a_zoo_name(demo_runs):
    runs, trained = demo_runs
    from_run = load_model(trained)
    from_folder = load_model(trained / "model")
    assert from_run.path == from_folder.path == trained / "model"
    assert load_model("add3-reversed").source == "zoo:add3-reversed"
    with pytest.raises(ValueError, match="neither a checkpoint directory"):
        load_model(runs)  # a folder of runs is none of them
