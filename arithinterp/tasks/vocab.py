"""The digit-level vocabulary shared by every task: one token per character."""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
# Single characters: digits, operators, '=' and the markers the scratchpad / CoT formats use.
CHARS = tuple("0123456789") + ("+", "-", "*", "=", ";", "|", "(", ")")
TOKENS: tuple[str, ...] = SPECIALS + CHARS
TOKEN_TO_ID: dict[str, int] = {t: i for i, t in enumerate(TOKENS)}
PAD_ID, BOS_ID, EOS_ID = (TOKEN_TO_ID[t] for t in SPECIALS)
DIGIT_IDS: tuple[int, ...] = tuple(TOKEN_TO_ID[str(d)] for d in range(10))
VOCAB_SIZE = len(TOKENS)


def encode(text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
    """Token ids of `text`, one per character; unknown characters raise ValueError."""
    ids = [BOS_ID] if bos else []
    for pos, ch in enumerate(text):
        if ch not in TOKEN_TO_ID:
            raise ValueError(f"unknown character {ch!r} at position {pos} in {text!r}")
        ids.append(TOKEN_TO_ID[ch])
    if eos:
        ids.append(EOS_ID)
    return ids


def decode(ids: Int[Tensor, " pos"] | list[int], *, skip_special: bool = True) -> str:
    """Text of a token-id sequence (special tokens dropped unless skip_special=False)."""
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    out = []
    for pos, i in enumerate(ids):
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"token id {i} at position {pos} is outside the vocabulary "
                             f"0..{VOCAB_SIZE - 1}")
        tok = TOKENS[i]
        if skip_special and tok in SPECIALS:
            continue
        out.append(tok)
    return "".join(out)


def token_strings(ids: Int[Tensor, " pos"]) -> list[str]:
    """One display string per token (specials included), for axis labels."""
    return [TOKENS[i] for i in ids.tolist()]


def digit_ids() -> Int[Tensor, " digit"]:
    """Token ids of the digits 0..9, in order."""
    return torch.tensor(DIGIT_IDS)
