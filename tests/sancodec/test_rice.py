from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sancodec.errors import CorruptCodeError
from sancodec.rice import best_k, rice_decode, rice_encode, unzigzag, zigzag

values = st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 300), max_size=80)


@given(values, st.integers(0, 31))
def test_round_trip(v: list[int], k: int) -> None:
    data = rice_encode(v, k)
    assert rice_decode(data, len(v), k).tolist() == v


def test_hand_coded_bits() -> None:
    # k=2: 5 = q 1, r 01 -> "1 0 01"; 2 = q 0, r 10 -> "0 10"; total 7 bits -> 1001010(0)
    assert rice_encode([5, 2], 2) == bytes([0b10010100])
    # a quotient of 32 or more escapes: 32 ones then the value in 32 bits
    data = rice_encode([2**20], 0)
    assert len(data) == 8
    assert data[:4] == b"\xff\xff\xff\xff"


def test_best_k_is_the_cheapest() -> None:
    v = np.random.default_rng(0).geometric(1 / 40, size=500)
    k = best_k(v)
    sizes = {j: len(rice_encode(v, j)) for j in range(10)}
    assert sizes[k] == min(sizes.values())
    # near the entropy of a geometric source (power-of-two parameters: within ~6% of H0)
    p = np.bincount(v) / v.size
    h0 = -(p[p > 0] * np.log2(p[p > 0])).sum() * v.size / 8
    assert sizes[k] < 1.08 * h0 + 1


@given(st.lists(st.integers(-(2**30), 2**30), max_size=50))
def test_zigzag_round_trip(v: list[int]) -> None:
    assert unzigzag(zigzag(v)).tolist() == v
    assert np.all(zigzag(v) >= 0)


def test_damaged_streams_are_refused() -> None:
    data = rice_encode([3, 9, 27], 1)
    with pytest.raises(CorruptCodeError, match="ends before"):
        rice_decode(data[:1], 3, 1)
    with pytest.raises(CorruptCodeError, match="trailing"):
        rice_decode(data + b"\x00", 3, 1)
    with pytest.raises(CorruptCodeError, match="header"):
        rice_decode(data, 3, 40)


@given(values, values, st.integers(0, 31), st.integers(0, 31))
def test_two_segments_share_one_stream(a: list[int], b: list[int], ka: int, kb: int) -> None:
    ks = [ka] * len(a) + [kb] * len(b)
    data = rice_encode(a + b, ks)
    assert rice_decode(data, len(a) + len(b), ks).tolist() == a + b
