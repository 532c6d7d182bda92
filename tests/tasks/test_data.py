"""Sampling problems: seeded, distinct, balanced by carries, disjoint splits."""

import pytest
import torch

from arithinterp.tasks import (
    TaskSpec,
    make_dataset,
    make_splits,
    sample_problems,
)
from arithinterp.tasks.data import make_test_split, problem_space_size


def test_splits_are_disjoint_and_seeded():
    spec = TaskSpec(digits_a=2, digits_b=2)
    train, test = make_splits(spec, 3000, 500, seed=3)
    pairs = lambda d: set(zip(d.a.tolist(), d.b.tolist(), strict=True))  # noqa: E731
    assert len(pairs(train)) == 3000 and len(pairs(test)) == 500
    assert not pairs(train) & pairs(test)
    train2, _ = make_splits(spec, 3000, 500, seed=3)
    assert torch.equal(train.tokens, train2.tokens)
    assert not torch.equal(train.tokens, make_splits(spec, 3000, 500, seed=4)[0].tokens)
    assert torch.equal(make_test_split(spec, 500, seed=3).tokens, test.tokens)
    assert train.loss_mask[:, spec.prompt_len :].all()
    assert not train.loss_mask[:, : spec.prompt_len].any()


def test_balanced_sampling_equalises_carry_counts():
    spec = TaskSpec(digits_a=3, digits_b=3)
    a, b = sample_problems(spec, 800, torch.Generator().manual_seed(0), sampling="carries")
    data = make_dataset(spec, a, b)
    assert torch.bincount(data.n_carries, minlength=4).tolist() == [200, 200, 200, 200]


def test_ranges_pad_operands_and_cover_digit_counts():
    spec = TaskSpec(digits_a=3, digits_b=3, min_digits_a=1, min_digits_b=1)
    a, b = sample_problems(spec, 600, torch.Generator().manual_seed(1))
    lengths = {len(str(x)) for x in a.tolist()}
    assert lengths == {1, 2, 3}
    data = make_dataset(spec, a, b)
    assert data.tokens.shape == (600, spec.seq_len)


def test_asking_for_more_problems_than_exist_is_refused():
    spec = TaskSpec(digits_a=1, digits_b=1)
    assert problem_space_size(spec) == 100
    with pytest.raises(ValueError, match="only 100"):
        make_splits(spec, 90, 20, seed=0)
    assert problem_space_size(TaskSpec(op="sub", digits_a=1, digits_b=1)) == 55


def test_removing_chain_tokens_by_slicing_equals_rendering():
    from arithinterp.tasks.data import with_chain_removed

    spec = TaskSpec(op="mul", digits_a=2, digits_b=3, format="cot")
    data = make_dataset(spec, torch.tensor([12, 99, 47]), torch.tensor([345, 100, 999]))
    for removed in (0, 1, 7, spec.max_cot_tokens):
        fast = with_chain_removed(data, removed)
        slow = make_dataset(spec.__class__(**{**spec.__dict__, "cot_tokens_removed": removed}),
                            data.a, data.b)
        assert fast.spec == slow.spec
        for name, value in vars(slow).items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(getattr(fast, name), value), name
    with pytest.raises(ValueError, match="cannot put back"):
        with_chain_removed(with_chain_removed(data, 5), 2)
    with pytest.raises(ValueError, match="only format 'cot'"):
        with_chain_removed(make_dataset(TaskSpec(), torch.tensor([123]), torch.tensor([456])), 1)
