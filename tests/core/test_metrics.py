"""Answer metrics: token ids from the data, checks at the boundary, normalizations."""

import pytest
import torch

from arithinterp.core.metrics import (
    AnswerMetric,
    answer_metric,
    check_finite,
    directed_effect,
    normalized_effect,
    normalized_per_prompt,
)
from arithinterp.tasks import TaskSpec, make_digit_pairs


def test_the_metric_reads_the_answer_tokens_of_the_pairs(tiny_task):
    pairs = make_digit_pairs(tiny_task, 8, operand="a", digit=0, seed=0)
    m = answer_metric(pairs, 0)
    pos = tiny_task.answer_positions()[0]
    assert m.pos == pos - 1 and m.label == "logit_diff(c0)"
    assert torch.equal(m.correct, pairs.clean.tokens[:, pos])
    assert torch.equal(m.correct, tiny_task.vocab.digit_ids()[pairs.clean.answer_digits[:, 0]])
    logits = torch.zeros(8, tiny_task.seq_len, tiny_task.vocab.size)
    logits[torch.arange(8), m.pos, m.correct] = 2.0
    assert torch.equal(m(logits), torch.full((8,), 2.0))
    with pytest.raises(ValueError, match="digit must be in 0..2"):
        answer_metric(pairs, 3)


def test_metric_checks_name_what_is_off():
    m = AnswerMetric(3, torch.tensor([1, 2]), torch.tensor([3, 4]))
    m.check(2, 5, 10)
    for args, message in (((3, 5, 10), "for 3 prompts"), ((2, 3, 10), r"in 0\.\.2"),
                          ((2, 5, 2), r"correct token ids must be in 0\.\.1")):
        with pytest.raises(ValueError, match=message):
            m.check(*args)


def test_normalizations():
    assert normalized_effect(torch.tensor([1.0, 3.0]), 3.0, 1.0).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="does not move the metric"):
        normalized_effect(torch.tensor([1.0]), 2.0, 2.0)
    patched = torch.tensor([[1.0, 5.0, 7.0]])
    clean, corrupt = torch.tensor([1.0, 5.0, 9.0]), torch.tensor([0.0, 5.0, 5.0])
    out = normalized_per_prompt(patched, clean, corrupt)
    assert out[0, 0] == 1.0 and out[0, 1].isnan() and out[0, 2] == 0.5


def test_a_directed_effect_reads_both_directions_on_one_scale():
    restored = torch.tensor([0.0, 0.25, 1.0])  # normalized: 0 = corrupted run, 1 = clean run
    assert directed_effect(restored, "denoise").tolist() == [0.0, 0.25, 1.0]
    # noising a component the clean run does not need leaves it clean (normalized 1): no effect
    assert directed_effect(restored, "noise").tolist() == [1.0, 0.75, 0.0]
    with pytest.raises(ValueError, match="direction must be"):
        directed_effect(restored, "sideways")


def test_check_finite_names_the_prompts():
    with pytest.raises(ValueError, match=r"for 1 of 3 prompts in the test \(prompts \[1\]\)"):
        check_finite(torch.tensor([[0.0, float("inf"), 1.0]] * 2), "the test")
    assert check_finite(torch.ones(3), "x").sum() == 3
    assert TaskSpec().answer_width == 4
