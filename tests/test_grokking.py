"""The Fourier analysis of modular models, checked on a hand-built clock model whose logits are
exactly sum_k cos(w_k(a+b-c)) for chosen frequencies, and on synthetic tables."""

import math

import pytest
import torch

from arithinterp.grokking import (
    compute_grokking_report,
    compute_progress,
    excluded_logits,
    full_grid,
    gini,
    grid_logits,
    key_frequencies,
    logit_spectrum,
    neuron_frequencies,
    restricted_logits,
)
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import ModularTask, TaskSpec, make_splits

P, KEYS, SCALE = 13, (2, 5), 4.0


def clock_model(p: int = P, keys=KEYS, scale: float = SCALE):
    """One layer, built by hand. W_E puts residue r at (cos w_k r, sin w_k r) for each key k;
    head 0 copies a's embedding to '=' and head 1 b's (one-hot attention by position); neuron
    (a, b) fires only for that pair (its input is the two embeddings dotted with a's and b's,
    thresholded between a match and the nearest miss); its output writes
    scale * sum_k cos(w_k(a+b-c)) into p logit dimensions, which W_U reads out."""
    task = ModularTask(p=p)
    e = len(keys) * 2
    d_model = e + 4 + 2 * e + p
    pos0, a0, b0, l0 = e, e + 4, 2 * e + 4, 3 * e + 4
    d_head = 8
    model = build_model(ModelSpec(n_layers=1, d_model=d_model, n_heads=2, d_head=d_head,
                                  d_mlp=p * p, act_fn="relu", normalization=None), task).eval()
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    r = torch.arange(p, dtype=torch.float64)
    emb = torch.stack([f(2 * math.pi * k * r / p) for k in keys for f in (torch.cos, torch.sin)],
                      dim=1)  # [p, e]
    ids = task.vocab.ids
    rows = [ids[str(x)] for x in range(p)]
    state["embed.weight"][rows, :e] = emb.float()
    state["pos_embed.weight"][:, pos0:pos0 + 4] = torch.eye(4)
    q, k, v = (state[f"blocks.0.attn.{n}.weight"] for n in "qkv")
    o = state["blocks.0.attn.o.weight"]
    for h, source in enumerate((0, 1)):  # head h: from '=' (position 2) to position `source`
        target = {0: 0, 1: 1, 2: source, 3: 3}
        for j in range(4):
            q[h * d_head + j, pos0 + j] = 1000.0
            k[h * d_head + j, pos0 + target[j]] = 1.0
        v[h * d_head:h * d_head + e, :e] = torch.eye(e)
        dst = a0 if h == 0 else b0
        o[dst:dst + e, h * d_head:h * d_head + e] = torch.eye(e)
    sims = emb @ emb.T  # [p, p]: len(keys) on the diagonal
    nearest = float(sims[~torch.eye(p, dtype=torch.bool)].max())
    top = float(len(keys))
    threshold = top + (top + nearest) / 2  # both match: 2·top; one miss: <= top + nearest
    fire = 2 * top - threshold
    w_in, b_in = state["blocks.0.mlp.in.weight"], state["blocks.0.mlp.in.bias"]
    w_out = state["blocks.0.mlp.out.weight"]
    c = torch.arange(p, dtype=torch.float64)
    for a in range(p):
        for b in range(p):
            n = a * p + b
            w_in[n, a0:a0 + e], w_in[n, b0:b0 + e] = emb[a].float(), emb[b].float()
            b_in[n] = -threshold
            logit = scale * sum(torch.cos(2 * math.pi * kk * (a + b - c) / p) for kk in keys)
            w_out[l0:l0 + p, n] = (logit / fire).float()
    state["unembed.weight"][rows, l0:l0 + p] = torch.eye(p)
    model.load_state_dict(state)
    return model, task


def test_the_clock_model_computes_its_logits():
    model, task = clock_model()
    logits = grid_logits(model, task)
    a, b, c = torch.meshgrid(*(torch.arange(P),) * 3, indexing="ij")
    expected = SCALE * sum(torch.cos(2 * math.pi * k * (a + b - c).double() / P) for k in KEYS)
    assert torch.allclose(logits, expected, atol=1e-4)


def test_the_analysis_recovers_the_built_frequencies_and_losses():
    model, task = clock_model()
    train, _ = make_splits(task, 50, task.n_problems - 50, seed=0)
    report = compute_grokking_report(model, task, train)
    assert report.key_frequencies == KEYS
    spectrum = report.logit_spectrum.set_index("frequency")["fraction"]
    assert spectrum.loc[list(KEYS)].sum() == pytest.approx(1.0, abs=1e-6)
    emb = report.embedding_spectrum.set_index("frequency")["fraction"]
    assert emb.loc[list(KEYS)].sum() == pytest.approx(1.0, abs=1e-6)
    losses = report.losses.set_index(["logits", "split"])
    for split in ("train", "test"):
        full = losses.loc[("full", split), "loss"]
        assert losses.loc[("restricted", split), "loss"] == pytest.approx(full, rel=1e-5)
        assert losses.loc[("full", split), "accuracy"] == 1.0
        # nothing is left once the key directions go: every residue equally likely
        assert losses.loc[("excluded", split), "loss"] == pytest.approx(math.log(P), rel=1e-5)
    # W_E's Fourier norms: 4 equal rows (cos/sin of each key) of 13 -> Gini 36/52
    assert report.gini_embedding == pytest.approx(36 / 52, abs=1e-6)


def test_restricted_plus_excluded_is_the_whole():
    torch.manual_seed(0)
    logits = torch.randn(P, P, P, dtype=torch.float64)
    whole = restricted_logits(logits, (1, 4)) + excluded_logits(logits, (1, 4))
    mean_c = logits.mean((0, 1), keepdim=True)
    assert torch.allclose(whole - mean_c, logits, atol=1e-10)
    spectrum = logit_spectrum(logits)
    assert spectrum["fraction"].sum() < 1  # other 2-D terms hold the rest
    assert spectrum["fraction"].min() > 0


def test_key_frequencies_cut_at_the_largest_drop():
    import pandas as pd

    spectrum = pd.DataFrame({"frequency": range(1, 9),
                             "fraction": [0.001, 0.3, 0.002, 0.25, 0.2, 0.001, 0.0015, 0.001]})
    assert key_frequencies(spectrum) == (2, 4, 5)
    with pytest.raises(ValueError, match="all zero"):
        key_frequencies(spectrum.assign(fraction=0.0))


def test_neuron_frequencies_on_synthetic_neurons():
    x = torch.arange(P, dtype=torch.float64)
    a, b = torch.meshgrid(x, x, indexing="ij")
    w = 2 * math.pi / P
    torch.manual_seed(1)
    acts = torch.stack([torch.cos(3 * w * a) + torch.sin(3 * w * b),   # frequency 3, linear
                        torch.cos(4 * w * (a + b)),                    # frequency 4, product
                        torch.randn(P, P, dtype=torch.float64)], -1)   # no structure
    table, explained = neuron_frequencies(acts, (3, 4))
    assert table["frequency"].tolist()[:2] == [3, 4]
    assert table["fve"].tolist()[:2] == pytest.approx([1.0, 1.0])
    assert table["key"].tolist()[:2] == [True, True] and table["fve"][2] < 0.5
    power = [(n - n.mean()).pow(2).sum() for n in acts.unbind(-1)]
    noise_part = float(power[2]) * (1 - table["fve"][2]) if table["key"][2] else float(power[2])
    assert explained < 1 and explained == pytest.approx(
        1 - noise_part / float(sum(power)), abs=0.1)


def test_gini():
    assert gini([1, 1, 1, 1]) == 0.0
    assert gini([0, 0, 0, 5]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="non-negative"):
        gini([-1, 2])


def test_progress_over_snapshots_restores_the_weights():
    model, task = clock_model()
    train, _ = make_splits(task, 60, task.n_problems - 60, seed=0)
    built = {k: v.clone() for k, v in model.state_dict().items()}
    blank = {k: torch.zeros_like(v) for k, v in built.items()}
    table = compute_progress(model, task, {0: blank, 10: built}, KEYS, train)
    assert set(table["step"]) == {0, 10} and len(table) == 2 * 3 * 2
    done = table[(table["step"] == 10) & (table["logits"] == "full")]
    assert done["accuracy"].tolist() == [1.0, 1.0]
    start = table[(table["step"] == 0) & (table["logits"] == "full")]
    assert start["loss"].tolist() == pytest.approx([math.log(P)] * 2)
    assert table.loc[table["step"] == 10, "key_fraction"].iloc[0] == pytest.approx(1.0)
    assert all(torch.equal(v, built[k]) for k, v in model.state_dict().items())


def test_bad_input_is_refused():
    model, task = clock_model()
    with pytest.raises(ValueError, match="needs a modular task"):
        compute_grokking_report(model, TaskSpec())
    with pytest.raises(ValueError, match=r"key frequencies must be in 1\.\.6"):
        compute_grokking_report(model, task, freqs=(7,))
    whole, _ = make_splits(task, task.n_problems - 1, 1, seed=0)
    grid = full_grid(task)
    with pytest.raises(ValueError, match="covers the whole grid"):
        compute_grokking_report(model, task, grid)
    assert len(whole) == task.n_problems - 1


def test_fourier_probes_read_the_clock_models_features():
    from arithinterp.probes.sweep import ProbeConfig, fit_probes
    from arithinterp.probes.targets import make_targets

    model, task = clock_model()
    data = full_grid(task)
    targets = make_targets(data, ["cos2_a", "cos3_a", "sin5_c", "a0"])
    assert [t.group for t in targets] == ["fourier", "fourier", "fourier", "operands"]
    cfg = ProbeConfig(sites=("resid_pre", "resid_post"), positions=(0, 2), ridge_alpha=1e-3,
                      shuffled_control=False, random_model_control=False)
    table = fit_probes(model, data, targets, cfg).table.set_index(
        ["target", "site", "pos", "metric"])["score"]
    assert table[("cos2_a", "resid_pre", 0, "r2")] > 0.999  # a key frequency of W_E
    assert table[("cos3_a", "resid_pre", 0, "r2")] < 0.5  # not one
    assert table[("sin5_c", "resid_post", 2, "r2")] > 0.999  # the answer's rotation at '='
    with pytest.raises(ValueError, match=r"frequency must be in 1\.\.6"):
        make_targets(data, ["cos9_a"])
