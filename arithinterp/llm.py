"""Arithmetic in a pretrained LLM: tokenized prompt suites, greedy evaluation, minimal pairs
and the localization pipeline.

`evaluate_llm` asks a `PromptSuite`'s problems, generates greedily (the bridge's own
forward, no KV cache) and parses the integer the continuation starts with (chat replies are
prefilled with the question, see `prompt_text`); exact match is against Python's
arithmetic. `make_llm_pairs` builds minimal pairs from problems (usually
the correctly answered ones, as Zhang et al. 2024 keep): one operand digit changed, or the
question's operator, with equal token lengths and a different first answer token, so the
metric — the logit difference between the clean and the corrupt answer's first token at the
last position — is read where both answers start. `localize_llm` then runs, on the pairs:
attribution patching of every head (all positions) and of the MLP outputs and residual
stream by position, in one forward and backward each; exact patching — of every head and of
the residual stream by layer x position where the fast engine covers the model (Llama
family), else of the top heads by the estimate — and of the top MLPs; path patching of the
top heads to the logits (their direct effect); direct logit attribution; the logit lens at
the last position; the attention of every head from the last position to the operand
tokens; and the knockout of the top-k heads against k random heads over several draws
(mean ablation, first-token accuracy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from arithinterp import schema
from arithinterp.analysis.attribution import compute_dla, compute_logit_lens
from arithinterp.analysis.attribution_patching import sweep_attribution
from arithinterp.analysis.localize import compute_knockout, rank_components
from arithinterp.analysis.metrics import AnswerMetric
from arithinterp.analysis.patching import Cell, PatchSpec, patch_each, sweep_patching
from arithinterp.analysis.paths import sweep_paths
from arithinterp.cache import run_cached
from arithinterp.components import Component, hook_name
from arithinterp.evaluate import run_greedy
from arithinterp.fields import check_int, described
from arithinterp.fourier import (
    BAI_FREQS,
    compute_digit_means,
    compute_fourier_r2,
    compute_weight_tables,
)
from arithinterp.models import LoadedModel, device_of, facts
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


def evaluate_llm(loaded: LoadedModel, suite: PromptSuite, n: int, *, seed: int = 0,
                 batch_size: int = 16, progress: bool = False) -> LLMEval:
    """Greedy answers to `n` of the suite's problems (drawn with `seed`), scored exactly."""
    problems = suite.problems(n, seed)
    longest = max(len(loaded.tokenizer.encode(str(suite.answer(a, b)))) for a, b in problems)
    n_new = longest + 1  # the answer and what follows it
    rows = []
    groups = group_by_length(loaded, suite, problems)
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


# ---- localization -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LLMLocalizeConfig:
    """How much of the pipeline to run on an LLM's pairs."""

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


GRIDS = (PatchSpec("z", by_pos=False), PatchSpec("mlp_out"), PatchSpec("resid_pre"))


def localize_llm(loaded: LoadedModel, pairs: PromptPairs, config: LLMLocalizeConfig, *,
                 batch_size: int = 8, progress: bool = False) -> dict[str, pd.DataFrame | dict]:
    """Every analysis of the pipeline on `pairs`: tables keyed 'attribution', 'patching',
    'ranking', 'paths', 'dla', 'logit_lens', 'operand_attention', 'knockout', and a
    'summary'."""
    model, metric = loaded.model, pair_metric(pairs)
    f = facts(model)
    if config.top_k > f.n_heads * f.n_layers:
        raise ValueError(f"top_k must be at most {f.n_heads * f.n_layers} (the model's heads), "
                         f"got {config.top_k}")
    fast = fast_engine_gap(model) is None
    steps = tqdm(total=7, desc="localize llm", unit="step", disable=not progress)
    attribution = pd.concat([sweep_attribution(model, pairs, spec, metric).to_frame()
                             for spec in GRIDS], ignore_index=True)
    steps.update()
    candidates = _candidates(attribution, config.n_exact)
    if fast:  # every head exactly below: the fast engine makes the whole grid cheap
        candidates = [c for c in candidates if c.kind == "mlp"]
    cells = [Cell("z", c.layer, c.head) if c.kind == "head" else Cell("mlp_out", c.layer)
             for c in candidates]
    patched = patch_each(model, pairs.corrupt.tokens, pairs.clean.tokens, cells, metric,
                         progress=progress) if cells else torch.empty(0, len(pairs))
    clean_logits = _logits(model, pairs.clean.tokens)
    clean, corrupted = metric(clean_logits), metric(_logits(model, pairs.corrupt.tokens))
    accuracy = float((clean_logits[:, -1].argmax(-1).cpu() == pairs.clean.target).double()
                     .mean())
    del clean_logits  # [pairs pos d_vocab]: large for an LLM
    exact = _exact_table(candidates, patched, clean, corrupted, metric.label)
    if fast:
        grids = [sweep_patching(model, pairs, spec, metric, progress=progress).to_frame(
            allow_unnormalized=True) for spec in (PatchSpec("z", by_pos=False),
                                                  PatchSpec("resid_pre"))]
        exact = pd.concat([grids[0], exact, grids[1]], ignore_index=True)
    steps.update()
    whole = exact[~exact["by_pos"].astype(bool)].reset_index(drop=True)  # whole components
    ranking = rank_components(whole, value="effect")
    dla = compute_dla(model, pairs.clean, metric, batch_size=batch_size)
    steps.update()
    lens = compute_logit_lens(model, pairs.clean, batch_size=batch_size)
    attention = _operand_attention(loaded, pairs.clean)
    steps.update()
    heads = [Component.parse(c) for c in ranking[ranking["kind"] == "head"]["component"]]
    top = heads[:config.top_k]
    paths = sweep_paths(model, pairs, metric, senders=top) if top else pd.DataFrame()
    steps.update()
    knockout = compute_knockout(model, pairs.clean, top, n_random=config.n_random,
                                seed=config.seed) if top else pd.DataFrame()
    steps.update()
    steps.close()
    estimate = [_estimate(attribution, Component.parse(c)) for c in whole["component"]]
    summary = {
        "change": pairs.change, "metric": metric.label, "metric_pos": metric.pos,
        "n_pairs": len(pairs), "clean_metric": float(clean.mean()),
        "corrupted_metric": float(corrupted.mean()),
        "clean_first_token_accuracy": accuracy,
        "position_labels": list(pairs.position_labels()),
        "attribution_exact_pearson": float(pd.Series(estimate).corr(whole["normalized"]))
        if len(whole) > 1 else float("nan"),
        "exact_engine": "fast" if fast else "hooks",
        "top_heads": [c.name for c in top], "warnings": [],
    }
    return {"attribution": attribution, "patching": exact, "ranking": ranking, "paths": paths,
            "dla": dla,
            "logit_lens": lens, "operand_attention": attention, "knockout": knockout,
            "summary": summary}


def _candidates(attribution: pd.DataFrame, n: int) -> list[Component]:
    """The n heads and the n MLPs whose attribution estimate (see `_estimate`) is largest in
    size (ranked apart: a few MLPs, early ones above all, would otherwise crowd out the
    heads a knockout needs)."""
    part = attribution[attribution["site"].isin(["z", "mlp_out"])]
    comps = [Component.parse(c) for c in dict.fromkeys(part["component"])]
    ranked = sorted(comps, key=lambda c: -abs(_estimate(part, c)))
    return [c for c in ranked if c.kind == "head"][:n] + [c for c in ranked if c.kind == "mlp"][:n]


def _estimate(attribution: pd.DataFrame, comp: Component) -> float:
    """Attribution patching's estimate of patching `comp` at every position (normalized): a
    head's all-position cell, an MLP's per-position cells summed (the estimate is linear)."""
    site = "z" if comp.kind == "head" else "mlp_out"
    rows = attribution[(attribution["site"] == site) & (attribution["component"] == comp.name)]
    return float(rows["normalized"].sum())


@torch.inference_mode()
def _logits(model, tokens: torch.Tensor) -> torch.Tensor:
    return model(tokens.to(device_of(model)))


def _exact_table(candidates: list[Component], patched: torch.Tensor, clean: torch.Tensor,
                 corrupted: torch.Tensor, label: str) -> pd.DataFrame:
    """Rows of `schema.PATCHING` for the exactly patched candidates (denoising, all
    positions): value, normalized (1 = the clean metric), effect."""
    c, k = float(clean.mean()), float(corrupted.mean())
    rows = []
    for comp, values in zip(candidates, patched, strict=True):
        mean = float(values.mean())
        norm = (mean - k) / (c - k) if c != k else float("nan")
        rows.append({"method": "exact", "site": "z" if comp.kind == "head" else "mlp_out",
                     "by_pos": False, "direction": "denoise", "layer": comp.layer,
                     "head": comp.head, "pos": None, "token": None, "component": comp.name,
                     "value": mean, "normalized": norm, "effect": norm, "metric": label})
    table = pd.DataFrame(rows, columns=list(schema.PATCHING.columns))
    table["head"] = table["head"].astype("Int64")
    table["pos"] = table["pos"].astype("Int64")
    return table


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
    _, cache = model.run_with_cache(prompts.tokens.to(device_of(model)),
                                    names_filter=lambda n: n in names)
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


# ---- Fourier features (Zhou et al. 2024) ------------------------------------------------------
def llm_fourier(loaded: LoadedModel, prompts: TokenPrompts, *, freqs=BAI_FREQS,
                n_shuffles: int = 20, seed: int = 0, batch_size: int = 16) -> pd.DataFrame:
    """How much of the digit tokens' embedding and unembedding, and of the residual stream
    at the last position grouped by the digit the model is about to write (the answer's
    first token), the Fourier basis over the ten digits explains with `freqs` (default
    {0, 1, 2, 5}: periods 10, 5 and 2), against the same tables with their ten rows
    shuffled (`n_shuffles` seeded permutations: the control's mean). Rows: source (W_E, W_U,
    resid_post), layer, grouped_by, freqs, median_r2, shuffled_r2, n_features."""
    digits = loaded.tokenizer.digit_ids()
    value = {int(t): d for d, t in enumerate(digits.tolist())}
    keep = [i for i, t in enumerate(prompts.target.tolist()) if t in value]
    values = torch.tensor([value[int(prompts.target[i])] for i in keep])
    if len(keep) == 0 or values.unique().numel() < 10:
        raise ValueError(f"the prompts' answers start with {values.unique().numel()} of the "
                         "ten digits; grouping by digit needs all ten (use more problems)")
    weights = compute_weight_tables(loaded.model, digits)
    tables = [("W_E", None, None, weights["W_E"]), ("W_U", None, None, weights["W_U"])]
    names = [hook_name("resid_post", layer) for layer in range(facts(loaded.model).n_layers)]
    cache = run_cached(loaded.model, prompts.tokens[keep], names, batch_size=batch_size)
    for layer, name in enumerate(names):
        tables.append(("resid_post", layer, "first answer digit",
                       compute_digit_means(cache[name][:, -1], values)))
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(10, generator=gen) for _ in range(n_shuffles)]
    rows = []
    for source, layer, grouped_by, table in tables:
        shuffled = [float(compute_fourier_r2(table[perm], freqs).nanmedian()) for perm in perms]
        rows.append({"source": source, "layer": layer, "grouped_by": grouped_by,
                     "freqs": ",".join(map(str, sorted(freqs))),
                     "median_r2": float(compute_fourier_r2(table, freqs).nanmedian()),
                     "shuffled_r2": sum(shuffled) / len(shuffled),
                     "n_features": int(table.shape[1])})
    out = pd.DataFrame(rows)
    out["layer"] = out["layer"].astype("Int64")
    return out
