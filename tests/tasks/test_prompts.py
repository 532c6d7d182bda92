"""LLM prompt suites: problems, templates, and the tokenized prompts' invariants."""

import pytest
import torch

from arithinterp.tasks import PromptSuite, TokenPrompts
from tests.conftest import BAD_CONFIG


def test_few_shot_text_and_problems():
    suite = PromptSuite(op="+", digits=2, n_shots=3, seed=1)
    shots = suite.shots()
    assert len(shots) == 3 and shots == PromptSuite(op="+", digits=2, seed=1).shots()
    text = suite.text(12, 35)
    lines = text.split("\n")
    assert lines[-1] == "12+35=" and len(lines) == 4
    assert all(line == f"{x}+{y}={x + y}" for line, (x, y) in zip(lines, shots, strict=False))
    problems = suite.problems(200, seed=3)
    assert len(set(problems)) == 200 and not set(problems) & set(shots)
    assert all(10 <= a <= 99 and 10 <= b <= 99 for a, b in problems)
    assert suite.name == "add2-few-shot"


def test_subtraction_keeps_answers_non_negative_and_one_digit_includes_zero():
    suite = PromptSuite(op="-", digits=1)
    problems = suite.problems(40)
    assert all(a >= b for a, b in problems) and suite.bounds == (0, 9)
    assert len(PromptSuite(op="*", digits=1).problems(1000)) == 100 - 3  # all but the shots


def test_chat_text_asks_the_question_and_an_operator_can_be_swapped():
    assert PromptSuite(op="*", template="chat", n_shots=0).text(7, 8) == "What is 7*8?"
    few = PromptSuite(op="+", n_shots=1)
    assert few.text(7, 8, op="-").endswith("\n7-8=") and few.text(7, 8).endswith("\n7+8=")
    assert few.text(7, 8, op="-").split("\n")[0] == few.text(7, 8).split("\n")[0]


@pytest.mark.parametrize("kwargs, field", [
    ({"op": "/"}, "op"), ({"digits": 0}, "digits"), ({"digits": 7}, "digits"),
    ({"template": "zero-shot"}, "template"), ({"n_shots": -1}, "n_shots"),
    ({"n_shots": 0}, "n_shots"),
])
def test_bad_suites_name_the_field(kwargs, field):
    with pytest.raises(BAD_CONFIG, match=field):
        PromptSuite(**kwargs)


def test_token_prompts_check_their_alignment_and_slice():
    p = TokenPrompts(torch.zeros(3, 4, dtype=torch.long), torch.tensor([1, 2, 3]),
                     ((1, 2), (3, 4), (5, 6)), (3, 7, 11), ("a", "+", "b", "="), ("x", "y", "z"))
    sub = p[torch.tensor([2, 0])]
    assert sub.problems == ((5, 6), (1, 2)) and sub.target.tolist() == [3, 1]
    assert sub.texts == ("z", "x") and len(p[0:2]) == 2 and p.position_labels()[-1] == "="
    with pytest.raises(ValueError, match="labels"):
        TokenPrompts(torch.zeros(1, 4, dtype=torch.long), torch.tensor([1]), ((1, 2),), (3,),
                     ("a",))


def test_a_suite_is_named_and_read_back_by_its_name():
    for suite in (PromptSuite(), PromptSuite(op="*", digits=2, template="chat"),
                  PromptSuite(op="-", digits=3, n_shots=5)):
        assert PromptSuite.from_name(suite.name, n_shots=suite.n_shots) == suite
    for name, message in (("div1-chat", "is not of the form"), ("add1", "is not of the form"),
                          ("add9-few-shot", "digits must be in 1..6")):
        with pytest.raises(ValueError, match=message):
            PromptSuite.from_name(name)
