"""Interventions as values: indices from the site registry, and each operation checked on
tensors small enough to work out by hand."""

import pytest
import torch

from arithinterp.core.interventions import (
    Add,
    Intervention,
    Replace,
    ReplaceInSubspace,
    ReplaceWhere,
    Zero,
    patch,
)


def test_the_index_follows_the_site_s_axes():
    assert Intervention("z", Zero(), 1, head=2, pos=3).index() == (slice(None), 3, 2)
    # an attention pattern is [batch head query key]: pos is the query
    assert Intervention("pattern", Zero(), 0, head=2, pos=3).index() == (slice(None), 2, 3)
    assert Intervention("resid_pre", Zero(), 0, pos=1).index() == (slice(None), 1)
    assert Intervention("resid_pre", Zero(), 0).index() == (slice(None),)
    assert Intervention("z", Zero(), 0, batch=slice(2, 4)).index() == (slice(2, 4),)
    idx = Intervention("mlp_post", Zero(), 0, pos=1, units=(3, 5)).index()
    assert idx[:2] == (slice(None), 1) and idx[2].tolist() == [3, 5]
    with pytest.raises(ValueError, match="no head axis"):
        Intervention("resid_pre", Zero(), 0, head=1).index()
    assert Intervention("z", Zero(), 1).hook == "blocks.1.attn.hook_z"


def test_operations_by_hand():
    act = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert Replace(torch.tensor([9.0, 8.0])).apply(act).tolist() == [[9, 8], [9, 8]]
    assert Zero().apply(act).tolist() == [[0, 0], [0, 0]]
    assert Add(torch.tensor([1.0, -1.0])).apply(act).tolist() == [[2, 1], [4, 3]]
    where = ReplaceWhere(torch.zeros(2), torch.tensor([[True], [False]]))
    assert where.apply(act).tolist() == [[0, 0], [3, 4]]


def test_replace_in_subspace_swaps_only_the_spanned_part():
    act, source = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 30.0]])
    e1 = torch.tensor([[1.0], [0.0], [0.0]])
    assert ReplaceInSubspace(e1, source).apply(act).tolist() == [[10, 2, 3]]
    # a basis that is not orthonormal spans the same plane as its QR factor
    basis = torch.tensor([[1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    q, _ = torch.linalg.qr(basis)
    got = ReplaceInSubspace(basis, source).apply(act)
    torch.testing.assert_close(got, ReplaceInSubspace(q, source).apply(act))
    torch.testing.assert_close(got, torch.tensor([[10.0, 20.0, 3.0]]))
    full = ReplaceInSubspace(torch.eye(3), source).apply(act)
    torch.testing.assert_close(full, source)


def test_a_trainable_basis_gets_gradients():
    basis = torch.nn.Parameter(torch.randn(4, 2, generator=torch.Generator().manual_seed(0)))
    act, source = torch.randn(3, 4), torch.randn(3, 4)
    ReplaceInSubspace(basis, source).apply(act).pow(2).sum().backward()
    assert basis.grad is not None and basis.grad.abs().sum() > 0


def test_patch_reads_the_donor_at_the_cell_and_turns_resid_mid_into_a_change_of_attn_out():
    donor = {"blocks.0.attn.hook_z": torch.arange(24.0).view(1, 2, 3, 4)}
    item = patch("z", 0, donor, head=1, pos=0)
    assert item.hook == "blocks.0.attn.hook_z"
    assert item.op.value.tolist() == [[4.0, 5.0, 6.0, 7.0]]
    mid = "blocks.1.hook_resid_mid"
    item = patch("resid_mid", 1, {mid: torch.ones(1, 2, 3)}, {mid: torch.zeros(1, 2, 3)}, pos=1)
    assert item.hook == "blocks.1.hook_attn_out" and isinstance(item.op, Add)
    assert item.op.value.tolist() == [[1.0, 1.0, 1.0]]
    with pytest.raises(ValueError, match="base run"):
        patch("resid_mid", 1, {mid: torch.ones(1, 2, 3)})
