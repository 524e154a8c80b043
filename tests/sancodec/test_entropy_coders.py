"""What both entropy coders of a (position, level) list promise (sancodec.codes.CODERS)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sancodec.codes import CODERS, EntropyCoder
from sancodec.errors import CorruptCodeError, InvalidInputError
from sancodec.sparse_stream import dyadic_bands

LEVEL = st.integers(-(2**31), 2**31).filter(bool)


@pytest.mark.parametrize("coder", list(CODERS))
@given(data=st.data(), length=st.integers(1, 3000), origin=st.integers(0, 10**7))
def test_round_trip(coder: EntropyCoder, data: st.DataObject, length: int, origin: int) -> None:
    encode, decode = CODERS[coder]
    bands = dyadic_bands(length)
    positions = sorted(data.draw(st.sets(st.integers(0, sum(bands) - 1), max_size=60)))
    levels = data.draw(st.lists(LEVEL, min_size=len(positions), max_size=len(positions)))
    coded = encode(np.array(positions, dtype=np.int64) + origin, levels, origin, bands)
    p, lv = decode(coded, len(positions), origin, bands)
    assert (p - origin).tolist() == positions
    assert lv.tolist() == levels


@pytest.mark.parametrize("coder", list(CODERS))
def test_bad_lists_and_damaged_codes_are_refused(coder: EntropyCoder) -> None:
    encode, decode = CODERS[coder]
    with pytest.raises(InvalidInputError, match="rise strictly"):
        encode([5, 5], [1, 1], 0, [64])
    with pytest.raises(InvalidInputError, match="rise strictly"):
        encode([64], [1], 0, [64])
    with pytest.raises(InvalidInputError, match="non-zero"):
        encode([5], [0], 0, [64])
    with pytest.raises(InvalidInputError, match="too large"):
        encode([5], [2**31 + 1], 0, [64])
    with pytest.raises(InvalidInputError, match="too large"):
        encode([5], [-(2**63)], 0, [64])
    with pytest.raises(InvalidInputError, match="bands"):
        decode(b"\x00" * 8, 1, 0, [])
    coded = encode([3, 10, 11, 40], [1, -2, 5, -1], 0, [64])
    with pytest.raises(CorruptCodeError, match=r"ends before|after its last"):
        decode(coded[:-1], 4, 0, [64])
    with pytest.raises(CorruptCodeError, match="after its last value"):
        decode(coded + b"\x01", 4, 0, [64])
    with pytest.raises(CorruptCodeError, match="cannot fit"):
        decode(coded, 1000, 0, [64])
    with pytest.raises(CorruptCodeError, match="beyond"):
        decode(encode([100], [1], 0, [64, 64]), 1, 0, [64])


@pytest.mark.parametrize("coder", list(CODERS))
@given(data=st.binary(max_size=64), count=st.integers(0, 100), length=st.integers(1, 2048))
def test_any_bytes_decode_or_raise_corrupt_code(
    coder: EntropyCoder, data: bytes, count: int, length: int
) -> None:
    _, decode = CODERS[coder]
    try:
        positions, levels = decode(data, count, 0, dyadic_bands(length))
    except CorruptCodeError:
        return
    assert positions.size == levels.size == count
    assert np.all(np.diff(positions) > 0)
    assert np.all(levels != 0)
