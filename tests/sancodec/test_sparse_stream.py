from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sancodec.sparse_stream import (
    ESCAPE,
    LEVEL_A0,
    MAX_K,
    RAW_BITS,
    RESET,
    dyadic_bands,
    encode_sparse,
)


def reference_encode(positions: list[int], levels: list[int], bands: list[int]) -> bytes:
    """The module docstring's code written out one value at a time, as plainly as it reads."""
    edges = np.cumsum(bands).tolist()
    state = {("gap", b): [max(2, s // 4), 1] for b, s in enumerate(bands)}
    state |= {("level", b): [LEVEL_A0, 1] for b in range(len(bands))}
    bits: list[str] = []

    def band(offset: int) -> int:
        return min(sum(e <= offset for e in edges), len(edges) - 1)

    def put(context: list[int], v: int) -> None:
        a, n = context
        k = 0
        while n * 2**k < a and k < MAX_K:
            k += 1
        if v >> k >= ESCAPE:
            bits.append("1" * ESCAPE + format(v, f"0{RAW_BITS}b"))
        else:
            bits.append("1" * (v >> k) + "0" + (format(v % 2**k, f"0{k}b") if k else ""))
        a, n = a + v, n + 1
        context[:] = [(a + 1) // 2, n // 2] if n >= RESET else [a, n]

    previous = -1
    for pos, level in zip(positions, levels, strict=True):
        put(state["gap", band(previous + 1)], pos - previous - 1)
        put(state["level", band(pos)], 2 * level - 1 if level > 0 else -2 * level - 2)
        previous = pos
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return bytes(int(text[i : i + 8], 2) for i in range(0, len(text), 8))


@given(st.data(), st.integers(1, 3000))
def test_code_is_the_documented_one_bit_for_bit(data: st.DataObject, length: int) -> None:
    bands = dyadic_bands(length)
    positions = sorted(data.draw(st.sets(st.integers(0, sum(bands) - 1), max_size=80)))
    # small levels adapt k down; then huge ones take the escape
    small_or_huge = st.one_of(st.integers(-3, 3), st.integers(-(2**31), 2**31 - 1)).filter(bool)
    levels = data.draw(st.lists(small_or_huge, min_size=len(positions), max_size=len(positions)))
    assert encode_sparse(positions, levels, 0, bands) == reference_encode(positions, levels, bands)


@pytest.mark.parametrize("step", [4, 24, 200])
def test_code_of_real_wavelet_coefficients_is_the_documented_one(
    mitdb100: np.ndarray, step: int
) -> None:
    import pywt

    block = mitdb100[2048:4096]  # hundreds of values per context: many resets of the statistics
    flat = np.concatenate(pywt.wavedec(block, "bior4.4", mode="periodization", level=5))
    levels = np.rint(flat / step).astype(np.int64)
    (where,) = np.nonzero(levels)
    bands = dyadic_bands(2048)
    expected = reference_encode(where.tolist(), levels[where].tolist(), bands)
    assert encode_sparse(where + 7, levels[where], 7, bands) == expected


def test_bands_cover_the_block() -> None:
    assert dyadic_bands(2048) == [32, 32, 64, 128, 256, 512, 1024 + 64]
    assert sum(dyadic_bands(7)) == 7 + 64


def test_adaptive_code_is_near_the_entropy_of_real_wavelet_coefficients(
    mitdb100: np.ndarray,
) -> None:
    import pywt

    block = mitdb100[:2048]
    flat = np.concatenate(pywt.wavedec(block, "bior4.4", mode="periodization", level=5))
    levels = np.rint(flat / 24).astype(np.int64)
    (where,) = np.nonzero(levels)
    coded = encode_sparse(where, levels[where], 0, dyadic_bands(2048))
    # zero-order entropy per sub-band of the quantized coefficients (the reference coder's rate)
    h0 = 0.0
    for band in pywt.wavedec(block, "bior4.4", mode="periodization", level=5):
        _, counts = np.unique(np.rint(band / 24), return_counts=True)
        p = counts / counts.sum()
        h0 += -(counts * np.log2(p)).sum()
    # per-block sub-band H0 ignores what a real code must send to learn the statistics; the
    # adaptive code measured 1.5-1.7x of it on record 100 at steps 8-64
    assert len(coded) * 8 < 1.8 * h0
