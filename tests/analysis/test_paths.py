"""Path patching: the fast engine against the brute-force hook construction."""

from dataclasses import replace

import pytest
import torch

from arithinterp.analysis.patching import PatchSpec, sweep_patching
from arithinterp.analysis.paths import senders_for, sweep_paths
from arithinterp.core.metrics import AnswerMetric, answer_metric
from arithinterp.models import ModelSpec, build_model
from arithinterp.pretrained import load_pretrained
from arithinterp.tasks import PromptPairs, TaskSpec, make_dataset, make_digit_pairs
from tests.conftest import with_random_biases

TASK = TaskSpec(digits_a=2, digits_b=2, format="reversed")


@pytest.fixture(scope="module")
def pairs():
    return make_digit_pairs(TASK, 12, operand="b", digit=0, seed=3)


def _model(spec):
    return with_random_biases(build_model(spec, TASK))


@pytest.mark.parametrize("spec", [
    ModelSpec(n_layers=3, d_model=32, n_heads=4, d_mlp=64, seed=5),
    ModelSpec(n_layers=2, d_model=24, n_heads=3, attn_only=True, normalization="RMS", seed=6),
], ids=["3L-LN", "2L-attn-only-RMS"])
@pytest.mark.parametrize("receiver, receiver_input", [
    ("logits", None), ("L1H0", "q"), ("L1H1", "k"), ("L1H2", "v")])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_fast_engine_equals_brute_force(spec, receiver, receiver_input, direction, pairs):
    model = _model(spec)
    metric = answer_metric(pairs, 0)
    kwargs = dict(receiver=receiver, receiver_input=receiver_input, direction=direction)
    fast = sweep_paths(model, pairs, metric, engine="fast", **kwargs)
    brute = sweep_paths(model, pairs, metric, engine="hooks", **kwargs)
    assert list(fast["sender"]) == list(brute["sender"]) == \
        [c.name for c in senders_for(model, receiver)]
    torch.testing.assert_close(torch.tensor(fast["value"].values),
                               torch.tensor(brute["value"].values), atol=1e-5, rtol=0)
    assert fast["value"].std() > 0  # the paths are not all trivially equal


def test_direct_path_of_last_layer_head_equals_its_activation_patch(pairs):
    """In an attention-only model a last-layer head reaches the logits only directly."""
    model = _model(ModelSpec(n_layers=2, d_model=24, n_heads=3, attn_only=True, seed=7))
    metric = answer_metric(pairs, 0)
    direct = sweep_paths(model, pairs, metric, senders=["L1H0", "L1H1", "L1H2"])
    patched = sweep_patching(model, pairs, PatchSpec("z", by_pos=False), metric)
    torch.testing.assert_close(torch.tensor(direct["value"].values).float(),
                               patched.mean()[1].float(), atol=1e-5, rtol=0)


def test_hook_engine_runs_on_a_wrapped_hf_model(tiny_gpt2_dir):
    """Pairs in the GPT-2 test tokenizer's ids: '12+34=4' vs '17+34=4' (digits are ids 0-9)."""
    loaded = load_pretrained(tiny_gpt2_dir)
    clean_ids = torch.tensor([[1, 2, 10, 3, 4, 11, 4], [5, 2, 10, 3, 4, 11, 8]])
    corrupt_ids = clean_ids.clone()
    corrupt_ids[:, 1] = 7
    data = make_dataset(TASK, torch.tensor([12, 52]), torch.tensor([34, 34]))
    mask = torch.ones_like(clean_ids, dtype=torch.bool)
    pairs = PromptPairs(replace(data, tokens=clean_ids, loss_mask=mask),
                        replace(data, tokens=corrupt_ids, loss_mask=mask), "a_0")
    metric = AnswerMetric(pos=5, correct=torch.tensor([4, 8]), wrong=torch.tensor([9, 1]))
    table = sweep_paths(loaded.model, pairs, metric, receiver="L1H1", receiver_input="q")
    assert list(table["sender"]) == ["L0H0", "L0H1", "L0H2", "L0H3", "L0.mlp"]
    assert table["value"].notna().all() and table["value"].std() > 0
    direct = sweep_paths(loaded.model, pairs, metric)
    assert len(direct) == 10 and direct["normalized"].notna().all()
    with pytest.raises(ValueError, match="fast engine"):
        sweep_paths(loaded.model, pairs, metric, engine="fast")


@pytest.mark.parametrize("kwargs, message", [
    ({"receiver": "L1H0"}, "receiver_input must be"),
    ({"receiver": "logits", "receiver_input": "q"}, "only meaningful"),
    ({"receiver": "L0H1", "receiver_input": "q", "senders": ["L0H0"]}, "later layer"),
    ({"receiver": "L1.mlp", "receiver_input": "q"}, "receiver must be"),
    ({"senders": ["L0.attn"]}, "sender must be"),
])
def test_bad_paths_are_refused(kwargs, message, pairs):
    model = _model(ModelSpec(n_layers=2, d_model=16, n_heads=2, d_mlp=32))
    with pytest.raises(ValueError, match=message):
        sweep_paths(model, pairs, answer_metric(pairs, 0), **kwargs)
