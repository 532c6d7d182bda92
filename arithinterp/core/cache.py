"""Caching selected activations over many prompts, in batches, never "cache everything".

Hook names are TransformerLens's (``blocks.0.hook_resid_post``, ``blocks.1.attn.hook_z``);
`act_names` builds them from sites and layers with `components.hook_name`. Results are CPU
tensors keyed by hook name, ready for `RunDir.save_tensors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp.components import hook_name
from arithinterp.core.engine import run
from arithinterp.models import HookedModel, device_of, facts


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size below 1, naming it."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def act_names(model: HookedModel, sites: Iterable[str],
              layers: Iterable[int] | None = None) -> list[str]:
    """Hook names of every site at every layer (all layers by default)."""
    layers = range(facts(model).n_layers) if layers is None else layers
    return [hook_name(site, layer) for layer in layers for site in sites]


@torch.inference_mode()
def run_cached(
    model: HookedModel, tokens: Int[Tensor, "batch pos"], names: list[str] | Callable[[str], bool],
    *, batch_size: int = 256, progress: bool = False, desc: str = "cache",
) -> dict[str, Tensor]:
    """Activations of the named hooks for every prompt, run in batches, on the CPU."""
    check_batch_size(batch_size)
    unknown = [] if callable(names) else sorted(set(names) - set(model.hook_dict))
    wanted = sorted(n for n in model.hook_dict if names(n)) if callable(names) else sorted(names)
    if unknown:
        raise ValueError(f"unknown hook names {unknown[:5]}; e.g. {hook_name('resid_post', 0)}")
    device = device_of(model)
    parts: dict[str, list[Tensor]] = {}
    starts = range(0, tokens.shape[0], batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, unit="batch"):
        batch = tokens[start : start + batch_size]
        cache = run(model, batch.to(device), capture=wanted).acts
        if start == 0:  # the first batch tells what the whole cache will take
            per_prompt = sum(a[0].numel() * a.element_size() for a in cache.values())
            check_fits(per_prompt * tokens.shape[0], f"caching {len(cache)} hooks over "
                                                     f"{tokens.shape[0]} prompts")
        for name, act in cache.items():
            parts.setdefault(name, []).append(act.detach().cpu())
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def available_memory() -> int | None:
    """Bytes of RAM the system reports available (Linux /proc/meminfo), None elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def batch_size_for(model: HookedModel, n_tokens: int, *, cap: int = 64,
                   share: float = 0.25) -> int:
    """Prompts per forward pass of `n_tokens` tokens that fit in `share` of the free memory
    (the GPU's where the model is on one, else the RAM /proc/meminfo reports), between 1 and
    `cap`. The estimate per prompt is generous: logits and their softmax over the whole
    vocabulary at every position, plus one layer's residual, MLP and attention activations
    and the hooks' copies of them (4 bytes each)."""
    f = facts(model)
    per_token = 2 * f.d_vocab + 8 * f.d_model + 3 * (f.d_mlp or 0) + 2 * f.n_heads * n_tokens
    per_prompt = 4 * n_tokens * per_token
    device = device_of(model)
    free = (torch.cuda.mem_get_info(device)[0] if device.type == "cuda"
            else available_memory())
    if free is None:
        return min(cap, 16)
    return max(1, min(cap, int(share * free) // per_prompt))


def check_fits(n_bytes: int, what: str, *, share: float = 0.8) -> None:
    """Refuse, with one line naming the sizes, work whose result would take more than `share`
    of the available RAM, before it is made: a clear error instead of an out-of-memory kill."""
    free = available_memory()
    if free is not None and n_bytes > share * free:
        raise ValueError(f"{what} needs {n_bytes / 2**30:.1f} GiB and {free / 2**30:.1f} GiB "
                          "of RAM is available: cache fewer hooks (names_filter), positions or "
                          "prompts")
