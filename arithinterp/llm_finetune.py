"""Fine-tuning a pretrained LLM on arithmetic prompts, and what it costs elsewhere.

`make_answer_data` turns a `PromptSuite`'s problems into training data for
`finetune.finetune`: each prompt (`llm.prompt_text`) followed by its answer's tokens and the
tokenizer's end-of-sequence token (when it has one), right-padded to one length, with the
loss on the answer tokens only. Right padding needs no attention mask: a causal model's real
positions never see the padding after them.

`make_text_windows` cuts a held-out English text (by default the help topics of CPython's
`pydoc_data.topics`, installed with every Python, so it is there offline) into windows of a
fixed number of tokens and keeps a seeded selection of them; `compute_perplexity` is the
token-level perplexity on them: exp of the mean next-token cross-entropy over every
predicted token of every window (as Hugging Face's ``labels=`` loss, per window).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from arithinterp.llm import encode_answer
from arithinterp.models import HookedModel, LoadedModel, device_of
from arithinterp.tasks import PromptSuite

DEFAULT_TEXT = "pydoc_data.topics"  # the name a config uses for the default text


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


def read_text(source: str = DEFAULT_TEXT) -> str:
    """The held-out text: CPython's pydoc help topics in key order (`DEFAULT_TEXT`), or the
    UTF-8 file `source`."""
    if source == DEFAULT_TEXT:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"text {source!r} is neither {DEFAULT_TEXT} nor a file")
    return path.read_text(encoding="utf-8")


def make_text_windows(loaded: LoadedModel, text: str, *, window: int, n: int, seed: int = 0
                      ) -> Int[Tensor, "batch pos"]:
    """`n` windows of `window` consecutive tokens of `text` (cut end to end, the rest
    dropped), drawn with `seed` and kept in text order; an error when the text has fewer."""
    ids = loaded.tokenizer.encode(text)
    available = len(ids) // window
    if available < n:
        raise ValueError(f"the text has {len(ids)} tokens: {available} windows of {window}, "
                         f"{n} asked for")
    chosen = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:n]
    return torch.tensor(ids[:available * window]).view(available, window)[chosen.sort().values]


@torch.inference_mode()
def compute_perplexity(model: HookedModel, windows: Int[Tensor, "batch pos"], *,
                       batch_size: int = 8) -> float:
    """Token-level perplexity: exp of the mean cross-entropy of each next token given the
    window's tokens before it, over every window (lower is better)."""
    device = device_of(model)
    total, count = 0.0, 0
    for start in range(0, windows.shape[0], batch_size):
        part = windows[start:start + batch_size].to(device)
        logits = model(part)[:, :-1]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), part[:, 1:].flatten(),
                               reduction="sum")
        total += float(loss)
        count += part[:, 1:].numel()
    return float(torch.tensor(total / count).exp())
