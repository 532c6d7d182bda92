"""Task specs, metadata and pairs, checked against Python integer arithmetic."""

import pytest
import torch
from conftest import BAD_CONFIG
from hypothesis import given
from hypothesis import strategies as st

from arithinterp.tasks import (
    FORMATS,
    TaskSpec,
    compute_metadata,
    make_carry_pairs,
    make_dataset,
    make_digit_pairs,
    make_splits,
    sample_problems,
)
from arithinterp.tasks.data import make_test_split, problem_space_size
from arithinterp.tasks.vocab import decode, encode


@st.composite
def problems(draw, op):
    da = draw(st.integers(1, 5))
    db = draw(st.integers(1, da if op == "sub" else 5))
    fmt = draw(st.sampled_from(FORMATS))
    spec = TaskSpec(op=op, digits_a=da, digits_b=db, format=fmt, min_digits_a=1, min_digits_b=1)
    a = draw(st.integers(0, 10**da - 1))
    b = draw(st.integers(0, 10**db - 1))
    if op == "sub" and a < b:  # b < 10**db <= 10**da, so the swap stays in range
        a, b = b, a
    return spec, a, b


def _digits(n, width):
    return [int(c) for c in reversed(str(n).zfill(width))]


@given(problems("add"))
def test_addition_metadata_matches_python_ints(p):
    spec, a, b = p
    m = compute_metadata(spec, a, b)
    w = spec.answer_width
    assert m.answer == a + b
    assert list(m.answer_digits) == _digits(a + b, w)
    assert list(m.a_digits) == _digits(a, spec.digits_a)
    # carry into k is 1 exactly when the k low digits overflow 10^k
    assert list(m.carry_in) == [int(a % 10**k + b % 10**k >= 10**k) for k in range(w)]
    assert m.n_carries == sum(m.carry_in)


@given(problems("sub"))
def test_subtraction_borrows_match_python_ints(p):
    spec, a, b = p
    m = compute_metadata(spec, a, b)
    assert m.answer == a - b
    assert list(m.answer_digits) == _digits(a - b, spec.answer_width)
    assert list(m.carry_in) == [int(a % 10**k < b % 10**k) for k in range(spec.answer_width)]


@given(problems("mul"))
def test_multiplication_running_sums_match_python_ints(p):
    spec, a, b = p
    m = compute_metadata(spec, a, b)
    w = spec.answer_width
    assert m.answer == a * b
    assert list(m.answer_digits) == _digits(a * b, w)
    ad, bd = _digits(a, spec.digits_a), _digits(b, spec.digits_b)
    assert [list(r) for r in m.partial_products] == [[x * y for y in bd] for x in ad]
    for k in range(w):
        # c_k = floor(sum over i+j <= k of a_i b_j 10^(i+j) / 10^k)  (Bai et al.'s running sum)
        low = sum(ad[i] * bd[j] * 10 ** (i + j) for i in range(len(ad)) for j in range(len(bd))
                  if i + j <= k)
        assert m.running_sums[k] == low // 10**k
        assert m.running_sums[k] % 10 == m.answer_digits[k]
        assert m.carry_in[k] == (m.running_sums[k - 1] // 10 if k else 0)


@given(st.sampled_from(["add", "sub", "mul"]).flatmap(problems))
def test_rendering_has_fixed_length_and_answer_at_answer_positions(p):
    spec, a, b = p
    ids = encode(spec.render(a, b), bos=True, eos=True)
    assert len(ids) == spec.seq_len
    m = compute_metadata(spec, a, b)
    text = decode(ids, skip_special=False)
    chars = ["<bos>"] + list(text[len("<bos>"):-len("<eos>")]) + ["<eos>"]
    assert [int(chars[pos]) for pos in spec.answer_positions()] == list(m.answer_digits)
    for which, pos in spec.operand_positions().items():
        assert [int(chars[q]) for q in pos] == list(getattr(m, f"{which}_digits"))


def test_formats_render_as_documented():
    assert TaskSpec(format="plain").render(123, 456) == "123+456=0579"
    assert TaskSpec(format="reversed").render(123, 456) == "123+456=9750"
    assert TaskSpec(format="scratchpad").render(123, 456) == "123+456=09;07;05;|0579"
    assert TaskSpec(format="cot").render(123, 456) == "123+456=09;07;05;|9750"
    assert TaskSpec(format="cot", cot_tokens_removed=3).render(123, 456) == "123+456=07;05;|9750"
    assert TaskSpec(op="sub", format="scratchpad").render(123, 45) == "123-045=18;17;00;|078"
    assert TaskSpec(op="sub", signed=True, format="plain").render(123, 145) == "123-145=-022"
    assert TaskSpec(op="mul", format="scratchpad").render(123, 145) == \
        "123*145=5160;2940(53550);3210(538710);|017835"


@pytest.mark.parametrize("kwargs, field", [
    ({"op": "div"}, "op"), ({"format": "fancy"}, "format"), ({"digits_a": 0}, "digits_a"),
    ({"digits_b": 12}, "digits_b"), ({"min_digits_a": 4}, "min_digits_a"),
    ({"op": "sub", "digits_a": 2, "digits_b": 3}, "digits_a"),
    ({"cot_tokens_removed": 2}, "cot_tokens_removed"),
    ({"format": "cot", "cot_tokens_removed": 99}, "cot_tokens_removed"),
    ({"signed": True}, "signed"),
])
def test_bad_specs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        TaskSpec(**kwargs)


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


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
@pytest.mark.parametrize("operand, digit", [("a", 0), ("a", 2), ("b", 1)])
def test_digit_pairs_differ_in_exactly_the_requested_digit(op, operand, digit):
    spec = TaskSpec(op=op, digits_a=3, digits_b=3)
    pairs = make_digit_pairs(spec, 40, operand=operand, digit=digit, seed=1)
    assert pairs.change == f"{operand}_{digit}"
    assert pairs.clean.tokens.shape == pairs.corrupt.tokens.shape
    clean = getattr(pairs.clean, f"{operand}_digits")
    dirty = getattr(pairs.corrupt, f"{operand}_digits")
    differs = clean != dirty
    assert differs[:, digit].all() and differs.sum() == len(pairs)
    other = "b" if operand == "a" else "a"
    assert torch.equal(getattr(pairs.clean, other), getattr(pairs.corrupt, other))
    assert (pairs.clean.answer != pairs.corrupt.answer).all()
    prompt_diff = pairs.clean.prompts != pairs.corrupt.prompts
    assert (prompt_diff.sum(dim=1) == 1).all()
    assert prompt_diff[:, spec.operand_positions()[operand][digit]].all()


@pytest.mark.parametrize("op", ["add", "sub"])
@pytest.mark.parametrize("position", [1, 2])
def test_carry_pairs_flip_the_carry_into_the_position(op, position):
    spec = TaskSpec(op=op, digits_a=3, digits_b=3)
    pairs = make_carry_pairs(spec, 30, position=position, seed=2)
    assert (pairs.clean.carry_in[:, position] != pairs.corrupt.carry_in[:, position]).all()
    prompt_diff = pairs.clean.prompts != pairs.corrupt.prompts
    assert (prompt_diff.sum(dim=1) == 1).all()
    ops = spec.operand_positions()
    allowed = {ops["a"][position - 1], ops["b"][position - 1]}
    assert {int(i) for i in prompt_diff.nonzero()[:, 1]} <= allowed


def test_impossible_pairs_raise_clear_errors():
    spec = TaskSpec(digits_a=3, digits_b=3)
    with pytest.raises(ValueError, match="digit must be in 0..2"):
        make_digit_pairs(spec, 4, operand="a", digit=3)
    with pytest.raises(ValueError, match="position must be in 1..3"):
        make_carry_pairs(spec, 4, position=0)
    with pytest.raises(ValueError, match="not 'mul'"):
        make_carry_pairs(TaskSpec(op="mul"), 4, position=1)
    with pytest.raises(ValueError, match="position must be in"):  # no carries in 1-digit sub
        make_carry_pairs(TaskSpec(op="sub", digits_a=1, digits_b=1), 4, position=1)
    with pytest.raises(BAD_CONFIG, match="operand"):
        make_digit_pairs(spec, 4, operand="c", digit=0)
