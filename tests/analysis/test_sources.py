"""Prompt sources: a task's source gives the same prompts, scores and evaluation as the task's
own functions, and an LLM suite's source those of `llm`; both round-trip their problems."""

import torch

from arithinterp import llm
from arithinterp.analysis.attention import compute_operand_attention
from arithinterp.analysis.sources import TaskSource, problems_of
from arithinterp.evaluate import evaluate, teacher_forced_correct
from arithinterp.pretrained import load_llm
from arithinterp.tasks import PromptSuite, make_dataset

PROBLEMS = [(12, 34), (56, 78), (90, 11)]


def test_a_task_source_is_the_tasks_own_functions(tiny_model, tiny_task):
    source = TaskSource(tiny_task)
    data = make_dataset(tiny_task, torch.tensor([12, 56, 90]), torch.tensor([34, 78, 11]))
    prompts = source.make_prompts(PROBLEMS)
    assert torch.equal(prompts.tokens, data.tokens) and source.name == tiny_task.name
    assert problems_of(prompts) == PROBLEMS
    assert torch.equal(source.training_data(PROBLEMS).loss_mask, data.loss_mask)
    assert torch.equal(source.correct(tiny_model, prompts), teacher_forced_correct(tiny_model,
                                                                                   data))
    ours, theirs = source.evaluate(tiny_model, PROBLEMS), evaluate(tiny_model, data)
    assert ours.exact_match == theirs.exact_match
    assert ours.digit_accuracy == theirs.digit_accuracy
    assert source.operand_attention(tiny_model, prompts).equals(
        compute_operand_attention(tiny_model, data))


def test_an_llm_suite_source_is_the_llm_functions(tiny_llama_dir):
    tiny = load_llm(tiny_llama_dir)
    suite = PromptSuite(digits=2, n_shots=2)
    source = llm.SuiteSource(tiny, suite, batch_size=2)
    prompts = source.make_prompts(PROBLEMS)
    assert torch.equal(prompts.tokens, llm.make_prompts(tiny, suite, PROBLEMS).tokens)
    assert problems_of(prompts) == PROBLEMS and source.name == "add2-few-shot"
    with torch.no_grad():
        first = tiny.model(prompts.tokens)[:, -1].argmax(-1)
    assert torch.equal(source.correct(tiny.model, prompts), first == prompts.target)
    ours = source.evaluate(tiny.model, PROBLEMS)
    assert ours.examples.equals(llm.evaluate_llm(tiny, suite, PROBLEMS, batch_size=2).examples)
    assert ours.digit_accuracy == []  # the answer is parsed whole
    assert torch.equal(source.training_data(PROBLEMS).tokens,
                       llm.make_answer_data(tiny, suite, PROBLEMS).tokens)
