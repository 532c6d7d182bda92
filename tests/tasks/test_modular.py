"""Modular tasks, checked against Python integer arithmetic."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from arithinterp.tasks import ModularTask, make_dataset, make_splits
from arithinterp.tasks.modular import MAX_P, MOD_OPS, fourier_features

PYTHON = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "poly": lambda a, b: a * a + a * b + b * b}


@st.composite
def problems(draw):
    p = draw(st.integers(2, 300))
    task = ModularTask(p=p, op=draw(st.sampled_from(MOD_OPS)))
    return task, draw(st.integers(0, p - 1)), draw(st.integers(0, p - 1))


@given(problems())
def test_answers_and_tokens_match_python_ints(problem):
    task, a, b = problem
    c = PYTHON[task.op](a, b) % task.p
    assert task.answer(a, b) == c
    data = make_dataset(task, torch.tensor([a]), torch.tensor([b]))
    ids = task.vocab.ids
    assert data.tokens[0].tolist() == [ids[str(a)], ids[str(b)], ids["="], ids[str(c)]]
    assert data.answer.item() == c
    assert data.loss_mask[0].tolist() == [False, False, False, True]
    assert task.answer_positions() == [3] and task.operand_positions() == {"a": [0], "b": [1]}


def test_vocab_holds_every_residue_once():
    task = ModularTask(p=113)
    tokens = task.vocab.tokens
    assert len(set(tokens)) == len(tokens)
    assert all(str(r) in task.vocab.ids for r in range(113))
    assert "113" not in task.vocab.ids


@pytest.mark.parametrize("frac", [0.3, 0.5])
def test_splits_partition_the_table_without_overlap(frac):
    task = ModularTask(p=23)
    n_train = round(frac * task.n_problems)
    train, test = make_splits(task, n_train, task.n_problems - n_train, seed=0)
    tr = set(zip(train.a.tolist(), train.b.tolist(), strict=True))
    te = set(zip(test.a.tolist(), test.b.tolist(), strict=True))
    assert len(tr) == n_train and len(te) == task.n_problems - n_train
    assert not tr & te
    assert tr | te == {(a, b) for a in range(23) for b in range(23)}
    again, _ = make_splits(task, n_train, task.n_problems - n_train, seed=0)
    assert torch.equal(again.tokens, train.tokens)


def test_name_round_trips():
    for op in MOD_OPS:
        task = ModularTask(p=97, op=op)
        assert ModularTask.from_name(task.name) == task


@pytest.mark.parametrize("kwargs, field", [
    ({"p": 1}, "p"), ({"p": MAX_P + 1}, "p"), ({"p": True}, "p"),
])
def test_bad_tasks_are_refused_by_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field} "):
        ModularTask(**kwargs)


def test_bad_names_and_operands_are_refused():
    with pytest.raises(ValueError, match="mod<p>-<op>"):
        ModularTask.from_name("add3")
    with pytest.raises(ValueError, match="op must be"):
        ModularTask.from_name("mod7-div")
    task = ModularTask(p=7)
    with pytest.raises(ValueError, match="operand b=7 is outside 0..6"):
        task.answer(3, 7)
    assert not task.is_valid(-1, 0) and task.is_valid(6, 0)
    with pytest.raises(ValueError, match="not a problem of task mod7-add"):
        make_dataset(task, torch.tensor([7]), torch.tensor([0]))


@given(problems())
def test_a_displayed_problem_parses_back_to_its_residues(problem):
    task, a, b = problem
    assert task.parse_problem(task.display_problem(a, b)) == (a, b)
    assert task.example_problem() == (task.p - 1, 0)


def test_a_typed_problem_is_two_residues_in_range():
    task = ModularTask(p=7)
    assert task.parse_problem("5+6=") == (5, 6) and task.parse_problem(" 5 6 ") == (5, 6)
    with pytest.raises(ValueError, match=r"operand a \(7\) must be in 0..6 for task mod7-add"):
        task.parse_problem("7 0")
    with pytest.raises(ValueError, match="cannot read 'five' as a problem: write two residues, "
                                         "e.g. 6 0"):
        task.parse_problem("five")


def test_fourier_features_are_the_circle_at_frequency_k():
    x = torch.arange(13)
    cos, sin = fourier_features(x, 13, 3)
    for v in range(13):
        assert cos[v].item() == pytest.approx(math.cos(2 * math.pi * 3 * v / 13))
        assert sin[v].item() == pytest.approx(math.sin(2 * math.pi * 3 * v / 13))
    # frequency k and p - k give the same cosines and opposite sines
    cos2, sin2 = fourier_features(x, 13, 10)
    assert torch.allclose(cos, cos2) and torch.allclose(sin, -sin2)
