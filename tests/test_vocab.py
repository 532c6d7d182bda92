import pytest
from hypothesis import given
from hypothesis import strategies as st

from arithinterp.tasks.vocab import BOS_ID, CHARS, EOS_ID, TOKENS, decode, encode


@given(st.text(alphabet=list(CHARS), max_size=40))
def test_encode_decode_round_trip(text):
    ids = encode(text, bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and len(ids) == len(text) + 2
    assert decode(ids) == text
    assert decode(ids, skip_special=False) == TOKENS[BOS_ID] + text + TOKENS[EOS_ID]


def test_unknown_character_names_character_and_position():
    with pytest.raises(ValueError, match=r"'x' at position 3"):
        encode("12+x4")


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        decode([0, 999])
