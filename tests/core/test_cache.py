"""Batched activation caching equals one unbatched run_with_cache and caches only what's named."""

import pytest
import torch

from arithinterp.components import hook_name
from arithinterp.core.cache import act_names, run_cached


def test_batched_cache_equals_one_run(tiny_model, tiny_task):
    tokens = torch.randint(0, 20, (10, tiny_task.seq_len))
    names = act_names(tiny_model, ["resid_post", "z"])
    assert names == ["blocks.0.hook_resid_post", "blocks.0.attn.hook_z",
                     "blocks.1.hook_resid_post", "blocks.1.attn.hook_z"]
    got = run_cached(tiny_model, tokens, names, batch_size=3)
    _, full = tiny_model.run_with_cache(tokens)
    assert set(got) == set(names)
    for name in names:
        torch.testing.assert_close(got[name], full[name], atol=1e-6, rtol=0)


def test_bad_names_are_refused(tiny_model, tiny_task):
    tokens = torch.zeros(2, tiny_task.seq_len, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown hook names"):
        run_cached(tiny_model, tokens, ["blocks.9.hook_resid_post"])
    with pytest.raises(ValueError, match="batch_size"):
        run_cached(tiny_model, tokens, [hook_name("z", 0)], batch_size=0)


def test_a_cache_that_would_not_fit_in_ram_is_refused_after_one_batch(tiny_model, tiny_task,
                                                                         monkeypatch):
    from arithinterp.core import cache as cache_module

    assert cache_module.available_memory() > 0  # this machine reports it (Linux)
    tokens = torch.randint(0, 20, (64, tiny_task.seq_len))
    names = act_names(tiny_model, ["resid_post"])
    need = len(names) * 64 * tiny_task.seq_len * tiny_model.cfg.d_model * 4  # float32
    monkeypatch.setattr(cache_module, "available_memory", lambda: need)  # 80% of it is short
    with pytest.raises(ValueError, match=r"caching 2 hooks over 64 prompts needs .* GiB"):
        run_cached(tiny_model, tokens, names, batch_size=16)
    monkeypatch.setattr(cache_module, "available_memory", lambda: 2 * need)
    assert run_cached(tiny_model, tokens, names, batch_size=16)[names[0]].shape[0] == 64


def test_the_batch_size_that_fits_follows_the_free_memory(monkeypatch):
    from arithinterp.core import cache
    from arithinterp.models import ModelSpec, build_model
    from arithinterp.tasks import TaskSpec

    task = TaskSpec(digits_a=2, digits_b=2)
    small = build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2), task)
    wide = build_model(ModelSpec(n_layers=1, d_model=64, n_heads=2), task)
    monkeypatch.setattr(cache, "available_memory", lambda: 64 << 20)
    fits = cache.batch_size_for(small, 10, cap=10_000)
    assert 1 < fits < 10_000
    # longer prompts and wider models fit fewer; more memory fits more, up to the cap
    assert cache.batch_size_for(small, 100, cap=10_000) < fits
    assert cache.batch_size_for(wide, 10, cap=10_000) < fits
    monkeypatch.setattr(cache, "available_memory", lambda: 128 << 20)
    assert cache.batch_size_for(small, 10, cap=10_000) in (2 * fits, 2 * fits + 1)
    assert cache.batch_size_for(small, 10, cap=32) == 32
    monkeypatch.setattr(cache, "available_memory", lambda: 10)
    assert cache.batch_size_for(small, 10) == 1  # never below one
    monkeypatch.setattr(cache, "available_memory", lambda: None)
    assert cache.batch_size_for(small, 10) == 16  # nothing known: a modest default
