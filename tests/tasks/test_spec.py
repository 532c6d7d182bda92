"""Task specs, metadata and pairs, checked against Python integer arithmetic."""

import re

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from arithinterp.tasks import (
    FORMATS,
    TaskSpec,
    compute_metadata,
    make_dataset,
)
from arithinterp.tasks.vocab import CHAR_VOCAB
from tests.conftest import BAD_CONFIG


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
    ids = CHAR_VOCAB.encode(spec.render(a, b), bos=True, eos=True)
    assert len(ids) == spec.seq_len
    m = compute_metadata(spec, a, b)
    text = CHAR_VOCAB.decode(ids, skip_special=False)
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
    assert TaskSpec(op="sub", format="scratchpad", min_digits_b=1).render(123, 45) == \
        "123-045=18;17;00;|078"
    assert TaskSpec(op="sub", signed=True, format="plain").render(123, 145) == "123-145=-022"
    assert TaskSpec(op="mul", format="scratchpad").render(123, 145) == \
        "123*145=5160;2940(53550);3210(538710);|017835"


@pytest.mark.parametrize("kwargs, field", [
    ({"op": "div"}, "op"), ({"format": "fancy"}, "format"), ({"digits_a": 0}, "digits_a"),
    ({"digits_b": 12}, "digits_b"), ({"min_digits_a": 4}, "min_digits_a"),
    ({"op": "sub", "digits_a": 2, "digits_b": 3}, "digits_a"),
    ({"cot_tokens_removed": 2}, "cot_tokens_removed"),
    ({"format": "cot", "cot_tokens_removed": 99}, "cot_tokens_removed"),
    ({"signed": True}, "signed"), ({"digits_a": True}, "digits_a"),
    ({"min_digits_b": False}, "min_digits_b"), ({"op": "sub", "signed": 1}, "signed"),
])
def test_bad_specs_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        TaskSpec(**kwargs)


@pytest.mark.parametrize("spec, a, b, message", [
    (TaskSpec(), 1000, 5, "operand a=1000 is outside 100..999"),
    (TaskSpec(), 123, 5, "operand b=5 is outside 100..999"),
    (TaskSpec(op="sub"), 100, 999, "unsigned subtraction needs a >= b"),
    (TaskSpec(), True, 123, "operand a must be an integer"),
])
def test_out_of_range_operands_are_refused_not_rendered(spec, a, b, message):
    for render in (spec.render, spec.render_prompt, spec.render_target):
        with pytest.raises(ValueError, match=message):
            render(a, b)
    with pytest.raises(BAD_CONFIG):  # a bool or float tensor fails the runtime type check
        make_dataset(spec, torch.tensor([a]), torch.tensor([b]))


@given(st.sampled_from(["add", "sub", "mul"]).flatmap(problems))
def test_a_displayed_problem_parses_back_to_its_operands(p):
    spec, a, b = p
    assert spec.parse_problem(spec.display_problem(a, b)) == (a, b)
    assert spec.is_valid(*spec.example_problem())


def test_a_typed_problem_may_have_spaces_and_an_equals_sign():
    spec = TaskSpec(op="add", digits_a=2, digits_b=2, format="reversed")
    assert spec.parse_problem(" 12 + 34 = ") == (12, 34)
    assert spec.example_problem() == (99, 10)


@pytest.mark.parametrize(("spec", "problem", "message"), [
    (TaskSpec(digits_a=2, digits_b=2), "12*34", "wrong operator '*'"),
    (TaskSpec(digits_a=2, digits_b=2), "123+45", "too many digits in operand a (123)"),
    (TaskSpec(digits_a=2, digits_b=2), "5+34", "operand a (5) must be in 10..99"),
    (TaskSpec(digits_a=2, digits_b=2), "twelve", "cannot read"),
    (TaskSpec(digits_a=2, digits_b=2), "", "type a problem"),
    (TaskSpec(op="sub", digits_a=2, digits_b=2), "12-34", "unsigned subtraction needs a >= b"),
])
def test_a_bad_typed_problem_is_refused_with_what_is_wrong(spec, problem, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        spec.parse_problem(problem)


@pytest.mark.parametrize("spec", [
    TaskSpec(op="add", digits_a=3, digits_b=3, format="reversed"),
    TaskSpec(op="mul", digits_a=2, digits_b=3, format="plain"),
    TaskSpec(op="sub", digits_a=3, digits_b=3, format="reversed", signed=True),
])
def test_a_task_name_reads_back_as_its_task(spec):
    assert TaskSpec.from_name(spec.name) == spec
    assert (spec.name.endswith("-signed")) == spec.signed
