"""Vocabularies: a task's tokens and their ids. The arithmetic tasks share the character
vocabulary (one token per character); a task family may bring its own (see `Vocab`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Int
from torch import Tensor

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIALS = (PAD, BOS, EOS)
# Single characters: digits, operators, '=' and the markers the scratchpad / CoT formats use.
CHARS = tuple("0123456789") + ("+", "-", "*", "=", ";", "|", "(", ")")


@dataclass(frozen=True)
class Vocab:
    """An ordered set of token strings; the specials come first (pad, bos, eos)."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.tokens[:3]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}, got {self.tokens[:3]}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a vocabulary's tokens must be distinct")

    @cached_property
    def ids(self) -> dict[str, int]:
        """Token string -> id."""
        return {t: i for i, t in enumerate(self.tokens)}

    @property
    def size(self) -> int:
        return len(self.tokens)

    @property
    def bos_id(self) -> int:
        return self.ids[BOS]

    @property
    def eos_id(self) -> int:
        return self.ids[EOS]

    def encode(self, text: str | Sequence[str], *, bos: bool = False,
               eos: bool = False) -> list[int]:
        """Token ids of `text` (a string: one token per character; a list: one per item);
        empty input and unknown tokens raise ValueError."""
        if len(text) == 0:
            raise ValueError("cannot encode an empty prompt")
        ids = [self.bos_id] if bos else []
        for pos, tok in enumerate(text):
            if tok not in self.ids or tok in SPECIALS:
                raise ValueError(f"unknown token {tok!r} at position {pos} in {text!r}")
            ids.append(self.ids[tok])
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Int[Tensor, " pos"] | Sequence[int], *, skip_special: bool = True,
               sep: str = "") -> str:
        """Text of a token-id sequence (special tokens dropped unless skip_special=False)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        out = []
        for pos, i in enumerate(ids):
            if not 0 <= i < self.size:
                raise ValueError(f"token id {i} at position {pos} is outside the vocabulary "
                                 f"0..{self.size - 1}")
            tok = self.tokens[i]
            if skip_special and tok in SPECIALS:
                continue
            out.append(tok)
        return sep.join(out)

    def token_strings(self, ids: Int[Tensor, " pos"]) -> list[str]:
        """One display string per token (specials included), for axis labels."""
        return [self.tokens[i] for i in ids.tolist()]

    def digit_ids(self) -> Int[Tensor, " digit"]:
        """Token ids of the digits 0..9, in order (a vocabulary without them raises)."""
        missing = [str(d) for d in range(10) if str(d) not in self.ids]
        if missing:
            raise ValueError(f"this vocabulary has no digit tokens {missing}")
        return torch.tensor([self.ids[str(d)] for d in range(10)])


CHAR_VOCAB = Vocab(SPECIALS + CHARS)
