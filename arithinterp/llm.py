"""Arithmetic in a pretrained LLM: tokenized prompt suites, greedy evaluation, minimal pairs,
training data, and the localization suite run on them.

`evaluate_llm` asks a `PromptSuite`'s problems, generates greedily (the bridge's own
forward, no KV cache) and parses the integer the continuation starts with (chat replies are
prefilled with the question, see `prompt_text`); exact match is against Python's
arithmetic. `make_llm_pairs` builds minimal pairs from problems (usually the correctly
answered ones, as Zhang et al. 2024 keep): one operand digit changed, or the question's
operator, with equal token lengths and a different first answer token, so the metric — the
logit difference between the clean and the corrupt answer's first token at the last
position — is read where both answers start. `make_answer_data` turns problems into training
data for `finetune.finetune`: each prompt followed by its answer's tokens and the tokenizer's
end-of-sequence token (when it has one), right-padded to one length, with the loss on the
answer tokens only (right padding needs no attention mask: a causal model's real positions
never see the padding after them). `SuiteSource` is all of this as a prompt source.

`localize_llm` runs the localization suite (`analysis.suite`) on the pairs with an LLM's
plan (`LLMLocalizeConfig.plan`): attribution patching of every head (all positions) and of
the MLP outputs and residual stream by position, in one forward and backward each; exact
patching — of every head and of the residual stream by layer x position where the fast
engine covers the model (Llama family), else of the top heads by the estimate — and of the
top MLPs; path patching of the top heads to the logits (their direct effect); direct logit
attribution; the logit lens at the last position; the attention of every head from the last
position to the operand tokens; and the knockout of the top-k heads against k random heads
over several draws (mean ablation, first-token accuracy).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.analysis.localize import max_random_sets
from arithinterp.analysis.suite import (
    GridConfig,
    Localization,
    LocalizePlan,
    attribution_estimate,
    compute_localization,
)
from arithinterp.components import Component, hook_name
from arithinterp.core.engine import run
from arithinterp.core.metrics import AnswerMetric
from arithinterp.evaluate import run_greedy, score_first_token
from arithinterp.fields import check_int, described
from arithinterp.models import HookedModel, LoadedModel, device_of, facts
from arithinterp.tasks import PromptPairs, PromptSuite, TokenPrompts
from arithinterp.tasks.prompts import LLM_OPS
from arithinterp.weights import fast_engine_gap

CHANGES = ("a", "b", "op")  # what a minimal pair changes: a digit of a, of b, or the operator


# ---- prompts ----------------------------------------------------------------------------------
def prompt_text(loaded: LoadedModel, suite: PromptSuite, a: int, b: int,
                op: str | None = None) -> str:
    """The full prompt for (a, b); `op` replaces the question's operator (the solved examples
    keep the suite's). A chat suite's question ('What is 7*8?') goes into the model's chat
    template and the assistant's reply is prefilled with '7*8=', so in both templates the
    next token starts the answer (unprefilled, SmolLM2 mostly restates the question or
    writes 'The answer is' first)."""
    text = suite.text(a, b, op)
    return loaded.tokenizer.chat(text) + suite.question(a, b, op) if suite.template == "chat" \
        else text


def _labels(loaded: LoadedModel, ids: list[int], a: int, b: int, op: str) -> list[str]:
    """Position labels: each token's text; the question's operand tokens also name their
    place (a1 = a's tens digit when digits are single tokens, else a's k-th token)."""
    tok = loaded.tokenizer
    strings = [s.replace("\n", "\\n") for s in tok.token_strings(torch.tensor(ids))]
    span = _question_span(loaded, ids, a, b, op)
    if span is None:
        return strings
    start, n_a, n_op, n_b = span
    for k in range(n_a):
        strings[start + k] = f"{strings[start + k]} (a{n_a - 1 - k})"
    for k in range(n_b):
        p = start + n_a + n_op + k
        strings[p] = f"{strings[p]} (b{n_b - 1 - k})"
    return strings


def _question_span(loaded: LoadedModel, ids: list[int], a: int, b: int, op: str
                   ) -> tuple[int, int, int, int] | None:
    """(start, tokens of a, of the operator, of b) of the last occurrence of the question
    'a op b' in the prompt's tokens, or None when it tokenizes differently in context."""
    tok = loaded.tokenizer
    parts = [tok.encode(str(a)), tok.encode(op), tok.encode(str(b))]
    needle = [t for p in parts for t in p]
    for start in range(len(ids) - len(needle), -1, -1):
        if ids[start:start + len(needle)] == needle:
            return start, len(parts[0]), len(parts[1]), len(parts[2])
    return None


def encode_answer(loaded: LoadedModel, suite: PromptSuite, a: int, b: int,
                  op: str | None = None) -> tuple[list[int], list[int], int]:
    """(prompt tokens, the answer's tokens after them, the answer); an error when the answer
    does not start a new token after the prompt."""
    text = prompt_text(loaded, suite, a, b, op)
    answer = suite.answer(a, b, op)
    ids = loaded.tokenizer.encode(text)
    full = loaded.tokenizer.encode(text + str(answer))
    if full[:len(ids)] != ids or len(full) == len(ids):
        raise ValueError(f"the answer of {a}{op or suite.op}{b} does not start a new token "
                         "after the prompt with this tokenizer")
    return ids, full[len(ids):], answer


def _encode(loaded: LoadedModel, suite: PromptSuite, a: int, b: int, op: str | None = None
            ) -> tuple[list[int], int, int]:
    """(prompt tokens, the answer's first token, the answer)."""
    ids, answer_ids, answer = encode_answer(loaded, suite, a, b, op)
    return ids, answer_ids[0], answer


def make_prompts(loaded: LoadedModel, suite: PromptSuite, problems: list[tuple[int, int]],
                 op: str | None = None) -> TokenPrompts:
    """The problems as prompts of one token length (an error naming the lengths otherwise)."""
    if not problems:
        raise ValueError("no problems to make prompts of")
    encoded = [_encode(loaded, suite, a, b, op) for a, b in problems]
    lengths = sorted({len(ids) for ids, _, _ in encoded})
    if len(lengths) > 1:
        raise ValueError(f"the prompts tokenize to {lengths} tokens; analyses need one length "
                         "(group them with group_by_length)")
    a, b = problems[0]
    return TokenPrompts(torch.tensor([ids for ids, _, _ in encoded]),
                        torch.tensor([t for _, t, _ in encoded]), tuple(problems),
                        tuple(ans for _, _, ans in encoded),
                        tuple(_labels(loaded, encoded[0][0], a, b, op or suite.op)),
                        tuple(prompt_text(loaded, suite, x, y, op) for x, y in problems))


def group_by_length(loaded: LoadedModel, suite: PromptSuite, problems: list[tuple[int, int]]
                    ) -> list[TokenPrompts]:
    """The problems' prompts, one `TokenPrompts` per token length."""
    by_len: dict[int, list[tuple[int, int]]] = {}
    for a, b in problems:
        by_len.setdefault(len(loaded.tokenizer.encode(prompt_text(loaded, suite, a, b))),
                          []).append((a, b))
    return [make_prompts(loaded, suite, group) for _, group in sorted(by_len.items())]


@dataclass(frozen=True)
class AnswerPrompts:
    """Prompts followed by their answers, right-padded; `loss_mask` marks the answer tokens
    (and end-of-sequence) that the loss predicts."""

    tokens: Int[Tensor, "batch pos"]
    loss_mask: Bool[Tensor, "batch pos"]
    problems: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def make_answer_data(loaded: LoadedModel, suite: PromptSuite, problems: list[tuple[int, int]]
                     ) -> AnswerPrompts:
    """The problems' prompts with their answers' tokens (and end-of-sequence) appended, padded
    on the right with end-of-sequence (else token 0) under a loss mask of 0."""
    if not problems:
        raise ValueError("no problems to make training data of")
    eos = getattr(loaded.tokenizer, "eos_id", None)
    rows = []
    for a, b in problems:
        prompt, answer, _ = encode_answer(loaded, suite, a, b)
        rows.append((prompt, answer + ([] if eos is None else [eos])))
    length = max(len(p) + len(t) for p, t in rows)
    tokens = torch.full((len(rows), length), 0 if eos is None else eos, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.bool)
    for i, (prompt, target) in enumerate(rows):
        tokens[i, :len(prompt) + len(target)] = torch.tensor(prompt + target)
        mask[i, len(prompt):len(prompt) + len(target)] = True
    return AnswerPrompts(tokens, mask, tuple(problems))


# ---- evaluation -------------------------------------------------------------------------------
def parse_answer(text: str) -> int | None:
    """The model's answer: the integer its continuation starts with (None when it does not
    start with one)."""
    m = re.match(r"\s*(-?\d+)", text)
    return None if m is None else int(m.group(1))


@dataclass(frozen=True)
class LLMEval:
    """Exact match of greedy answers; `examples`: a, b, answer, prompt, generated, parsed,
    correct, n_tokens."""

    suite: PromptSuite
    examples: pd.DataFrame

    @property
    def exact_match(self) -> float:
        return float(self.examples["correct"].mean())

    @property
    def digit_accuracy(self) -> list[float]:
        """None: an LLM's answer is parsed whole, not read digit by digit."""
        return []

    def problems(self, *, correct_only: bool = False) -> list[tuple[int, int]]:
        """The evaluated problems (only those answered correctly with `correct_only`)."""
        rows = self.examples[self.examples["correct"]] if correct_only else self.examples
        return list(zip(rows["a"].tolist(), rows["b"].tolist(), strict=True))

    def correct_problems(self) -> list[tuple[int, int]]:
        return self.problems(correct_only=True)

    def summary(self) -> dict:
        return {"suite": self.suite.name, "n": len(self.examples),
                "n_correct": int(self.examples["correct"].sum()),
                "exact_match": self.exact_match}


def evaluate_llm(loaded: LoadedModel, suite: PromptSuite, problems: Sequence[tuple[int, int]],
                 *, batch_size: int = 16, progress: bool = False) -> LLMEval:
    """Greedy answers to the problems (e.g. ``suite.problems(n, seed)``), scored exactly."""
    longest = max(len(loaded.tokenizer.encode(str(suite.answer(a, b)))) for a, b in problems)
    n_new = longest + 1  # the answer and what follows it
    rows = []
    groups = group_by_length(loaded, suite, list(problems))
    bar = tqdm(total=len(problems), desc=f"evaluate {suite.name}", unit="prompt",
               disable=not progress)
    for prompts in groups:
        for start in range(0, len(prompts), batch_size):
            part = prompts[slice(start, start + batch_size)]
            generated = run_greedy(loaded.model, part.tokens, n_new, batch_size=batch_size)
            for (a, b), answer, text, gen in zip(part.problems, part.answers, part.texts,
                                                 generated, strict=True):
                out = loaded.tokenizer.decode(gen.tolist())
                parsed = parse_answer(out)
                rows.append({"a": a, "b": b, "answer": answer, "prompt": text,
                             "generated": out, "parsed": parsed, "correct": parsed == answer,
                             "n_tokens": int(part.tokens.shape[1])})
            bar.update(len(part))
    bar.close()
    table = pd.DataFrame(rows)
    table["parsed"] = table["parsed"].astype("Int64")
    return LLMEval(suite, table)


# ---- minimal pairs ------------------------------------------------------------------------
def _partners(suite: PromptSuite, a: int, b: int, change: str, digit: int) -> list[tuple]:
    """Every (a', b', op') that differs from (a, b, op) in the requested place."""
    if change == "op":
        return [(a, b, op) for op in LLM_OPS if op != suite.op and (op != "-" or a >= b)]
    value = a if change == "a" else b
    out = []
    for d in range(10):
        s = list(str(value).zfill(suite.digits))
        k = len(s) - 1 - digit
        if s[k] == str(d) or (k == 0 and d == 0 and suite.digits > 1):
            continue
        s[k] = str(d)
        new = int("".join(s))
        x, y = (new, b) if change == "a" else (a, new)
        if suite.valid(x, y):
            out.append((x, y, suite.op))
    return out


def make_llm_pairs(loaded: LoadedModel, suite: PromptSuite, problems: list[tuple[int, int]],
                   *, change: str = "a", digit: int = 0, n: int = 32, seed: int = 0
                   ) -> PromptPairs:
    """Up to `n` minimal pairs from `problems`: digit `digit` (0 = least significant) of `a`
    or `b` changed, or (change 'op') the question's operator; each corrupt partner has the
    clean prompt's token length and another first answer token (drawn with `seed` among
    those that do). An error when none qualifies."""
    if change not in CHANGES:
        raise ValueError(f"change must be one of {list(CHANGES)}, got {change!r}")
    if change != "op" and not 0 <= digit < suite.digits:
        raise ValueError(f"digit must be in 0..{suite.digits - 1} for {suite.name}, got {digit}")
    gen = torch.Generator().manual_seed(seed)
    clean, corrupt = [], []
    for i in torch.randperm(len(problems), generator=gen).tolist():
        if len(clean) == n:
            break
        a, b = problems[i]
        ids, first, _ = _encode(loaded, suite, a, b)
        fits = []
        for x, y, op in _partners(suite, a, b, change, digit):
            other_ids, other_first, _ = _encode(loaded, suite, x, y, op)
            if len(other_ids) == len(ids) and other_first != first:
                fits.append((x, y, op))
        if fits:
            clean.append((a, b))
            corrupt.append(fits[int(torch.randint(len(fits), (1,), generator=gen))])
    if not clean:
        raise ValueError(f"no minimal pair changes {change}{'' if change == 'op' else digit} "
                         "and the first answer token at equal length")
    ops = {op for _, _, op in corrupt}
    corrupt_prompts = _mixed_op_prompts(loaded, suite, corrupt) if len(ops) > 1 else \
        make_prompts(loaded, suite, [(x, y) for x, y, _ in corrupt], ops.pop())
    label = "op" if change == "op" else f"{change}_{digit}"
    return PromptPairs(make_prompts(loaded, suite, clean), corrupt_prompts, label)


def _mixed_op_prompts(loaded: LoadedModel, suite: PromptSuite, corrupt: list[tuple]
                      ) -> TokenPrompts:
    """Corrupt prompts whose operators differ from pair to pair."""
    parts = [make_prompts(loaded, suite, [(x, y)], op) for x, y, op in corrupt]
    return TokenPrompts(torch.cat([p.tokens for p in parts]),
                        torch.cat([p.target for p in parts]),
                        tuple(p.problems[0] for p in parts), tuple(p.answers[0] for p in parts),
                        parts[0].labels, tuple(p.texts[0] for p in parts))


def pair_metric(pairs: PromptPairs) -> AnswerMetric:
    """Logit difference of the clean vs the corrupt answer's first token at the last
    position."""
    return AnswerMetric(pos=int(pairs.clean.tokens.shape[1]) - 1, correct=pairs.clean.target,
                        wrong=pairs.corrupt.target, label="logit_diff(first answer token)")


# ---- the prompt source ------------------------------------------------------------------------
@dataclass(frozen=True)
class SuiteSource:
    """A prompt suite asked of an LLM as a prompt source (`sources.PromptSource`): its
    prompts in the model's tokenization, scored by the answer's first token (teacher-forced)
    or by the parsed greedy answer (evaluation). `model` arguments may be fine-tuned copies of
    ``loaded.model``: the tokenizer is the same."""

    loaded: LoadedModel
    suite: PromptSuite
    batch_size: int = 16  # prompts per forward pass of an evaluation

    @property
    def name(self) -> str:
        return self.suite.name

    def make_prompts(self, problems: Sequence[tuple[int, int]]) -> TokenPrompts:
        return make_prompts(self.loaded, self.suite, list(problems))

    @torch.inference_mode()
    def correct(self, model: HookedModel, prompts: TokenPrompts) -> Bool[Tensor, " batch"]:
        return score_first_token(model(prompts.tokens.to(device_of(model))),
                                 prompts.target)[0].cpu()

    def evaluate(self, model: HookedModel, problems: Sequence[tuple[int, int]], *,
                 progress: bool = False) -> LLMEval:
        return evaluate_llm(replace(self.loaded, model=model), self.suite, problems,
                            batch_size=self.batch_size, progress=progress)

    def training_data(self, problems: Sequence[tuple[int, int]]) -> AnswerPrompts:
        return make_answer_data(self.loaded, self.suite, list(problems))

    def operand_attention(self, model: HookedModel, prompts: TokenPrompts) -> pd.DataFrame:
        return _operand_attention(replace(self.loaded, model=model), prompts)


# ---- localization -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LLMLocalizeConfig:
    """How much of the localization suite to run on an LLM's pairs."""

    n_exact: int = described(
        20, "Top MLPs patched exactly, and as many top heads where the fast engine does not "
        "cover the model (on Llama-family models every head is).")
    top_k: int = described(10, "Heads knocked out together.")
    n_random: int = described(5, "Random draws of as many heads.")
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_exact", self.n_exact, min=1)
        check_int("top_k", self.top_k, min=1)
        check_int("n_random", self.n_random, min=0)

    def plan(self, fast: bool, batch_size: int) -> LocalizePlan:
        """The suite's plan for an LLM: attribution patching of every head (all positions) and
        of the MLP outputs and residual stream by position; exact patching of every head and
        of the residual stream by layer x position where the fast engine covers the model
        (`fast`), else of the top heads by the estimate, and of the top MLPs; the top heads'
        direct paths to the logits and their knockout; no per-prompt values, agreement table
        or activation cache."""
        return LocalizePlan(
            ((GridConfig("z", by_pos=False, attribution=True), "all" if fast else "top"),
             (GridConfig("mlp_out", attribution=True), "top"),
             (GridConfig("resid_pre", attribution=True), "all" if fast else "none")),
            n_exact=self.n_exact, agreement=False, per_prompt=False, allow_unnormalized=True,
            paths="top", top_k=self.top_k, n_random=self.n_random, seed=self.seed,
            save_cache=False, batch_size=batch_size)


def localize_llm(source: SuiteSource, pairs: PromptPairs, config: LLMLocalizeConfig, *,
                 batch_size: int = 8, progress: bool = False) -> Localization:
    """The localization suite (`analysis.suite`) on an LLM's pairs with the config's plan,
    scored by `pair_metric`, DLA, the logit lens, the operand attention and the knockout on
    the clean prompts. The summary adds the first-token accuracy of the clean prompts, the
    correlation of the attribution estimate with exact patching over whole components, the
    exact engine and the top heads."""
    model, metric = source.loaded.model, pair_metric(pairs)
    f = facts(model)
    heads = [Component("head", layer, h) for layer in range(f.n_layers) for h in range(f.n_heads)]
    if config.top_k > len(heads):
        raise ValueError(f"top_k must be at most {len(heads)} (the model's heads), got "
                         f"{config.top_k}")
    if config.n_random > (most := max_random_sets(model, heads[:config.top_k])):
        raise ValueError(f"only {most} distinct random sets of {config.top_k} heads exist, "
                         f"{config.n_random} were asked for; lower n_random")
    fast = fast_engine_gap(model) is None
    result = compute_localization(model, source, pairs, metric, config.plan(fast, batch_size),
                                  eval_prompts=pairs.clean, progress=progress)
    patching, attribution = result.tables[schema.PATCHING], result.tables[schema.ATTRIBUTION]
    whole = patching[~patching["by_pos"].astype(bool)].reset_index(drop=True)
    estimate = [attribution_estimate(attribution, Component.parse(c)) for c in whole["component"]]
    accuracy = float(source.correct(model, pairs.clean).double().mean())
    summary = {
        **result.summary, "clean_first_token_accuracy": accuracy,
        "attribution_exact_pearson": float(pd.Series(estimate).corr(whole["normalized"]))
        if len(whole) > 1 else float("nan"),
        "exact_engine": "fast" if fast else "hooks",
        "top_heads": [c.name for c in result.selected], "warnings": [],
    }
    return replace(result, summary=summary)


@torch.inference_mode()
def _operand_attention(loaded: LoadedModel, prompts: TokenPrompts) -> pd.DataFrame:
    """Each head's attention from the last position to the question's operand tokens (a, b:
    all their tokens together) and to everything else, over the prompts."""
    model = loaded.model
    f = facts(model)
    a, b = prompts.problems[0]
    op = next((o for o in LLM_OPS if f"{a}{o}{b}=" in prompts.texts[0]), None) \
        if prompts.texts else None
    span = _question_span(loaded, prompts.tokens[0].tolist(), a, b, op) if op else None
    if span is None:
        return pd.DataFrame(columns=["layer", "head", "component", "digit", "query_pos", "key",
                                     "key_pos", "attention", "std"])
    start, n_a, n_op, n_b = span
    keys = {"a": list(range(start, start + n_a)),
            "b": list(range(start + n_a + n_op, start + n_a + n_op + n_b))}
    names = [hook_name("pattern", layer) for layer in range(f.n_layers)]
    cache = run(model, prompts.tokens.to(device_of(model)), capture=names).acts
    query = int(prompts.tokens.shape[1]) - 1
    rows = []
    for layer, name in enumerate(names):
        at = cache[name][:, :, query].float().cpu()  # [batch head key]
        taken = torch.zeros_like(at[..., 0])
        for key, positions in keys.items():
            mass = at[..., positions].sum(-1)
            taken += mass
            rows += _attention_rows(layer, f.n_heads, key, mass, query)
        rows += _attention_rows(layer, f.n_heads, "other", 1 - taken, query)
    return pd.DataFrame(rows)


def _attention_rows(layer: int, n_heads: int, key: str, mass: torch.Tensor, query: int
                    ) -> list[dict]:
    return [{"layer": layer, "head": h, "component": Component("head", layer, h).name,
             "digit": 0, "query_pos": query, "key": key, "key_pos": None,
             "attention": float(mass[:, h].mean()), "std": float(mass[:, h].std())}
            for h in range(n_heads)]
