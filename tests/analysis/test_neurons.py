"""MLP neurons: DLA that sums to the MLP's, patching that sums to mlp_out patching."""

import copy

import pandas as pd
import pytest
import torch

from arithinterp.analysis.attribution import compute_dla_per_prompt
from arithinterp.analysis.neurons import (
    activation_by,
    compute_neuron_dla,
    compute_neuron_patching,
    compute_neuron_ranking,
    neuron_activations,
    neuron_table,
    top_activating,
)
from arithinterp.analysis.patching import PatchSpec, sweep_patching
from arithinterp.core.metrics import answer_metric
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import TaskSpec, make_digit_pairs
from arithinterp.tasks.data import make_test_split
from tests.conftest import with_random_biases

TASK = TaskSpec(digits_a=2, digits_b=2, format="reversed")
SPECS = {"LN": ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=48, seed=2),
         "RMS": ModelSpec(n_layers=2, d_model=24, n_heads=3, d_mlp=32, normalization="RMS",
                          act_fn="relu", seed=3)}


def model_of(norm: str):
    return with_random_biases(build_model(SPECS[norm], TASK))


@pytest.fixture(scope="module")
def pairs():
    return make_digit_pairs(TASK, 16, operand="a", digit=0, seed=0)


@pytest.mark.parametrize("norm", list(SPECS))
def test_a_layers_neurons_sum_to_its_mlp_dla(norm, pairs):
    model = model_of(norm)
    metric = answer_metric(pairs, 0)
    layer = 1
    no_bias = copy.deepcopy(model)  # without b_out, the MLP's row is its neurons' alone
    with torch.no_grad():
        no_bias.state_dict()[f"blocks.{layer}.mlp.out.bias"].zero_()  # shares the storage
    per_prompt, labels = compute_dla_per_prompt(no_bias, pairs.clean, metric)
    neurons = compute_neuron_dla(no_bias, pairs.clean, metric, layer, batch_size=5)
    assert neurons.shape == (16, SPECS[norm].d_mlp)
    assert torch.allclose(neurons.sum(1), per_prompt[:, labels.index("L1.mlp")], atol=1e-4)
    table = neuron_table(no_bias, pairs.clean, metric, layer)
    assert table["rank"].tolist() == list(range(1, SPECS[norm].d_mlp + 1))
    assert table["dla"].abs().is_monotonic_decreasing
    top = int(table.iloc[0]["neuron"])
    assert table.iloc[0]["dla"] == pytest.approx(float(neurons[:, top].double().mean()),
                                                 abs=1e-6)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_every_neuron_at_one_position_equals_patching_mlp_out_there(direction, pairs):
    model = model_of("LN")
    metric = answer_metric(pairs, 0)
    grid = sweep_patching(model, pairs, PatchSpec("mlp_out"), metric, direction=direction)
    frame = grid.to_frame()
    for layer, pos in ((0, 2), (1, metric.pos)):
        every = compute_neuron_patching(model, pairs, metric, layer,
                                        [list(range(SPECS["LN"].d_mlp))], pos=pos,
                                        direction=direction)
        cell = frame[(frame["layer"] == layer) & (frame["pos"] == pos)]
        assert every["value"].item() == pytest.approx(cell["value"].item(), abs=1e-4)
        assert every["effect"].item() == pytest.approx(cell["effect"].item(), abs=1e-4)
    single = compute_neuron_patching(model, pairs, metric, 1, [3, 5], direction=direction)
    assert single["neurons"].tolist() == ["3", "5"] and single["pos"].isna().all()


def test_a_ranking_patches_the_strongest_neurons_alone_in_both_directions(pairs):
    model = model_of("LN")
    metric = answer_metric(pairs, 0)
    table, patched = compute_neuron_ranking(model, pairs, metric, 1, top=3)
    pd.testing.assert_frame_equal(table, neuron_table(model, pairs.clean, metric, 1))
    top = table["neuron"].head(3).tolist()
    assert patched["direction"].tolist() == ["denoise"] * 3 + ["noise"] * 3
    assert patched["neurons"].tolist() == [str(n) for n in top] * 2
    assert patched["pos"].isna().all()
    noise = compute_neuron_patching(model, pairs, metric, 1, top, direction="noise")
    assert patched["value"].tail(3).tolist() == pytest.approx(noise["value"].tolist(), abs=1e-6)


def test_top_activating_problems_and_activation_by_a_digit():
    model = model_of("RMS")
    data = make_test_split(TASK, 64, seed=1)
    acts = neuron_activations(model, data, 0, 7, pos=5)
    top = top_activating(model, data, 0, 7, pos=5, k=5)
    assert top["activation"].tolist() == pytest.approx(
        torch.sort(acts, descending=True).values[:5].double().tolist())
    assert top["problem"].iloc[0] == TASK.display(int(top["a"].iloc[0]), int(top["b"].iloc[0]))
    digit = data.a % 10
    by = activation_by(acts, digit, name="a0")
    for row in by.itertuples():
        assert row.activation == pytest.approx(float(acts[digit == row.a0].double().mean()))
        assert row.count == int((digit == row.a0).sum())


def test_bad_requests_name_what_is_off(pairs):
    model = model_of("LN")
    metric = answer_metric(pairs, 0)
    with pytest.raises(ValueError, match=r"layer must be in 0\.\.1"):
        compute_neuron_dla(model, pairs.clean, metric, 2)
    with pytest.raises(ValueError, match=r"neurons must be in 0\.\.47, got \[99\]"):
        compute_neuron_patching(model, pairs, metric, 0, [99])
    with pytest.raises(ValueError, match="neurons is empty"):
        compute_neuron_patching(model, pairs, metric, 0, [])
    with pytest.raises(ValueError, match=r"pos must be in"):
        compute_neuron_patching(model, pairs, metric, 0, [1], pos=40)
    with pytest.raises(ValueError, match="attention-only"):
        attn_only = build_model(ModelSpec(n_layers=1, d_model=16, n_heads=2, attn_only=True),
                                TASK)
        compute_neuron_dla(attn_only, pairs.clean, metric, 0)
    with pytest.raises(ValueError, match="2 activations but 3 values"):
        activation_by(torch.ones(2), torch.ones(3))
