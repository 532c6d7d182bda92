import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from arithinterp.tasks.vocab import CHAR_VOCAB, CHARS, SPECIALS, Vocab

encode, decode = CHAR_VOCAB.encode, CHAR_VOCAB.decode
TOKENS, BOS_ID, EOS_ID = CHAR_VOCAB.tokens, CHAR_VOCAB.bos_id, CHAR_VOCAB.eos_id


@given(st.text(alphabet=list(CHARS), min_size=1, max_size=40))
def test_encode_decode_round_trip(text):
    ids = encode(text, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == len(text) + 2
    assert decode(ids) == text
    assert decode(ids, skip_special=False) == TOKENS[BOS_ID] + text + TOKENS[EOS_ID]


def test_unknown_character_names_character_and_position():
    with pytest.raises(ValueError, match=r"'x' at position 3"):
        encode("12+x4")


def test_empty_prompts_are_refused():
    with pytest.raises(ValueError, match="empty prompt"):
        encode("")
    with pytest.raises(ValueError, match="empty prompt"):
        encode("", bos=True, eos=True)


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode([0, 999])


def test_a_task_family_can_bring_its_own_vocabulary():
    residues = Vocab(SPECIALS + tuple(f"r{i}" for i in range(7)) + ("+", "="))
    ids = residues.encode(["r3", "+", "r6", "="], bos=True)
    assert ids == [BOS_ID, 6, 10, 9, 11] and residues.size == 12
    assert residues.decode(ids, sep=" ") == "r3 + r6 ="
    with pytest.raises(ValueError, match="no digit tokens"):
        residues.digit_ids()
    assert torch.equal(CHAR_VOCAB.digit_ids(), torch.arange(3, 13))
    with pytest.raises(ValueError, match="starts with"):
        Vocab(("a", "b"))
    with pytest.raises(ValueError, match="distinct"):
        Vocab(SPECIALS + ("a", "a"))
