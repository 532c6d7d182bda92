"""Attention summaries: rows sum to 1, a hand-checkable uniform model, and add3's column heads."""

import pytest
import torch

from arithinterp.analysis.attention import (
    compute_attention_patterns,
    compute_layer_patterns,
    compute_operand_attention,
)
from arithinterp.checkpoints import load_model
from arithinterp.components import hook_name
from arithinterp.models import ModelSpec, build_model
from arithinterp.tasks import make_splits


@pytest.fixture(scope="module")
def data(tiny_task):
    return make_splits(tiny_task, 0, 24, seed=2)[1]


@pytest.fixture(scope="module")
def uniform_model(tiny_task):
    """Zero queries: every score is 0, so each query attends uniformly to itself and before."""
    model = build_model(ModelSpec(n_layers=2, d_model=32, n_heads=4, d_mlp=64), tiny_task)
    state = model.state_dict()
    for key in state:
        if ".attn.q." in key:
            state[key] = torch.zeros_like(state[key])
    model.load_state_dict(state)
    return model.eval()


def test_operand_attention_rows_sum_to_one(tiny_model, data):
    df = compute_operand_attention(tiny_model, data, batch_size=10)
    keys = ["a0", "a1", "b0", "b1", "other"]
    assert len(df) == 2 * 4 * 3 * len(keys)
    assert df["key"].tolist()[:5] == keys
    assert df["key_pos"].tolist()[:4] == [2, 1, 5, 4] and df["key_pos"].isna().sum() == 24
    sums = df.groupby(["layer", "head", "digit"])["attention"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert (df["std"] >= 0).all()
    assert set(df["component"]) == {f"L{L}H{h}" for L in range(2) for h in range(4)}


def test_uniform_attention_is_one_over_prefix_length(uniform_model, data, tiny_task):
    df = compute_operand_attention(uniform_model, data)
    for q, group in df.groupby("query_pos"):
        share = 1 / (q + 1)
        operand = group[group["key"] != "other"]["attention"].to_numpy()
        other = group[group["key"] == "other"]["attention"].to_numpy()
        assert operand == pytest.approx(share, abs=1e-6)
        assert other == pytest.approx((q + 1 - 4) * share, abs=1e-6)
    assert sorted(df["query_pos"].unique()) == [p - 1 for p in tiny_task.answer_positions()]


def test_attention_patterns_match_the_cache(tiny_model, data):
    pattern = compute_attention_patterns(tiny_model, data.tokens, 1, 2, batch_size=7)
    with torch.inference_mode():
        _, cache = tiny_model.run_with_cache(data.tokens)
    torch.testing.assert_close(pattern, cache[hook_name("pattern", 1)][:, 2])
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:2]))
    assert (pattern.triu(1) == 0).all()  # causal
    with pytest.raises(ValueError, match="layer"):
        compute_attention_patterns(tiny_model, data.tokens, 2, 0)
    with pytest.raises(ValueError, match="head"):
        compute_attention_patterns(tiny_model, data.tokens, 0, 4)


def test_a_layers_patterns_are_every_heads_mean_over_the_prompts(tiny_model, uniform_model,
                                                                 data):
    with torch.inference_mode():
        _, cache = tiny_model.run_with_cache(data.tokens)
    torch.testing.assert_close(compute_layer_patterns(tiny_model, data.tokens, 1),
                               cache[hook_name("pattern", 1)].mean(0))
    torch.testing.assert_close(compute_layer_patterns(tiny_model, data.tokens[:1], 0),
                               cache[hook_name("pattern", 0)][0])  # one prompt: its own
    # zero queries: each query attends uniformly to itself and every position before it
    n = data.tokens.shape[1]
    uniform = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    torch.testing.assert_close(compute_layer_patterns(uniform_model, data.tokens, 0),
                               uniform.expand(4, n, n), atol=1e-6, rtol=0)


def test_add3_has_a_layer0_head_reading_each_column():
    loaded = load_model("add3-reversed")
    task = loaded.task
    _, test = make_splits(task, 0, 64, seed=0)
    df = compute_operand_attention(loaded.model, test)
    assert df.groupby(["layer", "head", "digit"])["attention"].sum().to_numpy() == \
        pytest.approx(1.0, abs=1e-5)
    layer0 = df[df["layer"] == 0]
    for k in range(max(task.digits_a, task.digits_b)):
        column = layer0[(layer0["digit"] == k) & layer0["key"].isin([f"a{k}", f"b{k}"])]
        assert column.groupby("head")["attention"].sum().max() > 0.8


def pointer_model(task, targets: list[dict[int, int]]):
    """A one-layer, attention-only model whose head h attends from query position q to key
    position targets[h][q] (to itself where unlisted), with weight ~1: positions are one-hot
    in the residual stream, W_Q = c·I and W_K sends position k to the queries that point at it."""
    from arithinterp.models import ModelSpec as Spec

    n = task.seq_len
    n_heads = len(targets)
    model = build_model(Spec(n_layers=1, d_model=n, n_heads=n_heads, d_head=n, attn_only=True,
                             normalization=None), task).eval()
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    state["pos_embed.weight"] = torch.eye(n)
    q = torch.zeros(n_heads * n, n)
    k = torch.zeros(n_heads * n, n)
    for h, target in enumerate(targets):
        q[h * n:(h + 1) * n] = 50.0 * torch.eye(n)  # query at p: 50·e_p
        for p in range(n):
            k[h * n + p, target.get(p, p)] = 1.0  # key at position t holds e_p for each p -> t
    state["blocks.0.attn.q.weight"], state["blocks.0.attn.k.weight"] = q, k
    model.load_state_dict(state)
    return model


def test_the_attention_graph_of_a_hand_built_model_is_what_was_built():
    from arithinterp.analysis.attention import compute_attention_graph, compute_operand_pairs
    from arithinterp.tasks import TaskSpec

    task = TaskSpec(op="mul", digits_a=2, digits_b=2, format="reversed")
    ops = task.operand_positions()
    eq = task.prompt_len - 1
    # head 0 "caches" a0·b1 at '=' and a1·b0 at c0; head 1 "retrieves" '=' from c1 and c2
    c = task.answer_positions()
    built = [{eq: ops["a"][0], c[0]: ops["b"][0]}, {c[1]: eq, c[2]: eq}]
    model = pointer_model(task, built)
    data = make_splits(task, 0, 20, seed=1)[1]
    graph = compute_attention_graph(model, data, threshold=0.5)
    got = {(r.head, r.query_pos, r.key_pos) for r in graph.itertuples()}
    expected = {(h, q, built[h].get(q, q)) for h in range(2) for q in range(task.seq_len)}
    assert got == expected
    assert graph["attention"].min() > 0.99 and graph["std"].max() < 1e-3
    row = graph[(graph["head"] == 1) & (graph["query_pos"] == c[1])].iloc[0]
    assert (row.key_label, row.query_label, row.component) == ("=", "c1", "L0H1")
    pairs = compute_operand_pairs(model, data).set_index(["head", "query_pos"])
    at_eq = pairs.loc[(0, eq)]
    assert at_eq["a_digit"] == 0 and at_eq["a_attention"] > 0.99
    assert at_eq["pair_attention"] == pytest.approx(at_eq["a_attention"] + at_eq["b_attention"])
    with pytest.raises(ValueError, match="threshold"):
        compute_attention_graph(model, data, threshold=0.0)
