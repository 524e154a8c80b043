"""Adaptive Golomb-Rice coding of sparse (position, level) lists: the layers' entropy coder.

Positions rise strictly; each is coded as the gap from the previous one minus 1 (the first from
`origin` - 1), then its level as zigzag(level) - 1, zigzag mapping 0, -1, 1, -2 ... to 0, 1, 2,
3 ... (levels are never zero). A value v with parameter k is written as v >> k one-bits, a
zero-bit and the k low bits of v, MSB first; a quotient of 32 or more as 32 one-bits and v in 32
bits; bits are packed MSB-first, the last byte zero-padded. k comes from a context's running
statistics, as in JPEG-LS: k is the least k with n * 2^k >= a, where the context has seen n values summing to
a - a0; after each value a += v, n += 1, and when n reaches RESET both are halved (rounding a
up). Positions fall into bands (e.g. wavelet sub-bands): a gap uses the context of the band where
the previous position + 1 lies, a level the context of its own position's band. Contexts start
at n = 1 and a = a0: band size // 4 (at least 2) for gaps, LEVEL_A0 for levels. The decoder
tracks the same state, so no parameter is sent.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from sancodec.errors import CorruptCodeError, InvalidInputError

__all__ = [
    "MAX_LEVEL",
    "LayerValues",
    "band_of",
    "check_bands",
    "decode_sparse",
    "dyadic_bands",
    "encode_sparse",
    "layer_values",
]

RESET = 16
LEVEL_A0 = 16
MAX_K = 31
ESCAPE = 32  # a quotient this large is sent as ESCAPE one-bits, then the value in RAW_BITS bits
RAW_BITS = 32
MAX_LEVEL = 1 << (RAW_BITS - 1)  # |level| <= 2^31 zigzags below 2^32 (and no int64 overflows)


class _Context:
    """A context's running statistics, for the decoder (the encoder runs `_parameters`)."""

    __slots__ = ("a", "n")

    def __init__(self, a0: int) -> None:
        self.a, self.n = a0, 1

    def k(self) -> int:
        return _k(self.a, self.n)

    def update(self, v: int) -> None:
        self.a += v
        self.n += 1
        if self.n >= RESET:
            self.a, self.n = (self.a + 1) >> 1, self.n >> 1


def _k(a: int, n: int) -> int:
    """The least k with n * 2^k >= a (at most MAX_K): k bits hold ceil(a / n) - 1."""
    return min((-(-a // n) - 1).bit_length(), MAX_K)


def _parameters(values: list[int], contexts: list[int], a0: list[int]) -> list[int]:
    """The k of every value, each context's statistics updated as `_Context` does."""
    a, n = list(a0), [1] * len(a0)
    ks = []
    for v, c in zip(values, contexts, strict=True):
        ac, nc = a[c], n[c]
        ks.append(min((-(-ac // nc) - 1).bit_length(), MAX_K))  # _k, inlined: the hot loop
        ac, nc = ac + v, nc + 1
        if nc >= RESET:
            ac, nc = (ac + 1) >> 1, nc >> 1
        a[c], n[c] = ac, nc
    return ks


def _contexts(bands: Sequence[int]) -> tuple[list[_Context], list[_Context], list[int]]:
    gaps = [_Context(max(2, int(s) // 4)) for s in bands]
    levels = [_Context(LEVEL_A0) for _ in bands]
    return gaps, levels, np.cumsum(bands).tolist()


def dyadic_bands(length: int, octaves: int = 6, slack: int = 64) -> list[int]:
    """Contexts for wavelet coefficients of a block: [0, L/64), then one band per octave up to
    [L/2, L + slack), the slack covering the few extra coefficients of odd lengths."""
    edges = [length >> j for j in range(octaves, 0, -1)] + [length + slack]
    return [b - a for a, b in zip([0, *edges[:-1]], edges, strict=True)]


def band_of(edges: list[int], offset: int) -> int:
    """The band holding `offset`, the bands ending at `edges` (the last one takes the rest)."""
    return min(bisect.bisect_right(edges, offset), len(edges) - 1)


def check_bands(bands: Sequence[int]) -> None:
    if not bands or min(bands) < 0:
        raise InvalidInputError(f"bands must be one or more sizes >= 0, got {list(bands)}")


class LayerValues(NamedTuple):
    """What an entropy coder writes for each entry of a layer, in order, and the band whose
    context codes it: the gap from the previous position minus 1 (coded in the band of the
    previous position + 1), then the level (coded in the band of its own position)."""

    gaps: npt.NDArray[np.int64]
    gap_bands: npt.NDArray[np.int64]
    levels: npt.NDArray[np.int64]
    level_bands: npt.NDArray[np.int64]


def layer_values(
    positions: npt.ArrayLike, levels: npt.ArrayLike, origin: int, bands: Sequence[int]
) -> LayerValues:
    """Check strictly rising positions in [origin, origin + sum(bands)) with non-zero levels of
    at most 2^31, and split them into the values both entropy coders write."""
    check_bands(bands)
    p = np.asarray(positions, dtype=np.int64) - origin
    lv = np.asarray(levels, dtype=np.int64)
    if p.size != lv.size or (
        p.size and (p[0] < 0 or p[-1] >= sum(bands) or np.any(np.diff(p) <= 0))
    ):
        raise InvalidInputError("positions must rise strictly inside the bands, one level each")
    if np.any(lv == 0):
        raise InvalidInputError("levels must be non-zero")
    too_large = (lv > MAX_LEVEL) | (lv < -MAX_LEVEL)
    if np.any(too_large):
        raise InvalidInputError(f"level {int(lv[too_large][0])} is too large to code")
    edges, last = np.cumsum(bands), len(bands) - 1
    previous = np.concatenate([[-1], p[:-1]])[: p.size]
    return LayerValues(
        gaps=p - previous - 1,
        gap_bands=np.minimum(np.searchsorted(edges, previous + 1, side="right"), last),
        levels=lv,
        level_bands=np.minimum(np.searchsorted(edges, p, side="right"), last),
    )


def encode_sparse(
    positions: npt.ArrayLike, levels: npt.ArrayLike, origin: int, bands: Sequence[int]
) -> bytes:
    """Code strictly rising positions in [origin, origin + sum(bands)) with non-zero levels."""
    layer = layer_values(positions, levels, origin, bands)
    lv = layer.levels
    values = np.empty(2 * lv.size, dtype=np.int64)  # gap, level, gap, level ...
    values[0::2] = layer.gaps
    values[1::2] = np.where(lv > 0, 2 * lv - 1, -2 * lv - 2)
    contexts = np.empty(2 * lv.size, dtype=np.int64)  # gap contexts, then level contexts
    contexts[0::2] = layer.gap_bands
    contexts[1::2] = len(bands) + layer.level_bands
    a0 = [max(2, int(s) // 4) for s in bands] + [LEVEL_A0] * len(bands)
    k = np.array(_parameters(values.tolist(), contexts.tolist(), a0), dtype=np.int64)
    q = values >> k
    escaped = q >= ESCAPE
    if np.any(values[escaped] >= 1 << RAW_BITS):
        raise InvalidInputError(f"value {int(values[escaped].max())} is too large to code")
    return _pack(
        ones=np.where(escaped, ESCAPE, q),
        zeros=(~escaped).astype(np.int64),
        raw_bits=np.where(escaped, RAW_BITS, k),
        raw=np.where(escaped, values, values & ((1 << k) - 1)),
    )


def _pack(
    ones: npt.NDArray[np.int64],
    zeros: npt.NDArray[np.int64],
    raw_bits: npt.NDArray[np.int64],
    raw: npt.NDArray[np.int64],
) -> bytes:
    """Each value's code: `ones` one-bits, `zeros` zero-bits, then `raw` in `raw_bits` bits MSB
    first; all of them one after another, packed MSB-first, the last byte zero-padded."""
    lengths = ones + zeros + raw_bits
    starts = np.cumsum(lengths) - lengths
    bits = np.zeros(int(lengths.sum()), dtype=np.uint8)
    bits[_runs(starts, ones)] = 1
    owner = np.repeat(np.arange(raw.size), raw_bits)
    at = _runs(starts + ones + zeros, raw_bits)
    shift = (starts + ones + zeros + raw_bits)[owner] - 1 - at  # bit j of raw_bits: shift n-1-j
    bits[at] = (raw[owner] >> shift) & 1
    return np.packbits(bits).tobytes()


def _runs(starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """starts[i], starts[i] + 1 ... starts[i] + counts[i] - 1 for every i, in order."""
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    return np.repeat(starts - first, counts) + np.arange(total, dtype=np.int64)


def decode_sparse(
    data: bytes, count: int, origin: int, bands: Sequence[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The inverse of encode_sparse; CorruptCodeError for anything that does not decode exactly."""
    check_bands(bands)
    if count < 0 or 2 * count > 8 * len(data):  # every value takes at least one bit
        raise CorruptCodeError(f"{count} values cannot fit in {len(data)} bytes")
    gap_ctx, level_ctx, edges = _contexts(bands)
    reader, previous = _BitReader(data), -1
    positions, levels = [], []
    for _ in range(count):
        previous += 1 + _get(reader, gap_ctx[band_of(edges, previous + 1)])
        if previous >= edges[-1]:
            raise CorruptCodeError(f"position {origin + previous} lies beyond the layer's range")
        v = _get(reader, level_ctx[band_of(edges, previous)])
        positions.append(previous)
        levels.append(-(v + 2) // 2 if v % 2 == 0 else (v + 1) // 2)
    reader.finish()
    return np.array(positions, dtype=np.int64) + origin, np.array(levels, dtype=np.int64)


def _get(reader: _BitReader, context: _Context) -> int:
    k = context.k()
    q = reader.ones(ESCAPE)
    v = reader.read(RAW_BITS) if q == ESCAPE else (q << k) | reader.read(k)
    context.update(v)
    return v


class _BitReader:
    """MSB-first bits of `data`; each read looks only at the bytes it spans, so decoding costs
    time in proportion to the code's length, however long it is."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0  # bits consumed
        self._size = 8 * len(data)

    def _peek(self, bits: int) -> int:
        """The next `bits` bits (all of them there) as an integer, not consumed."""
        first, end = self._pos >> 3, self._pos + bits
        chunk = int.from_bytes(self._data[first : (end + 7) >> 3], "big")
        return (chunk >> (-end % 8)) & ((1 << bits) - 1)

    def read(self, bits: int) -> int:
        if bits > self._size - self._pos:
            raise CorruptCodeError("the code ends before its last value")
        value = self._peek(bits)
        self._pos += bits
        return value

    def ones(self, limit: int) -> int:
        """Read ones up to a zero (consumed) or `limit` ones (no zero follows)."""
        m = min(limit, self._size - self._pos)
        mask = (1 << m) - 1
        run = m - (self._peek(m) ^ mask).bit_length()  # leading ones of the next m bits
        if run < m:
            self._pos += run + 1
            return run
        if m < limit:
            raise CorruptCodeError("the code ends before its last value")
        self._pos += m
        return m

    def finish(self) -> None:
        left = self._size - self._pos
        if left >= 8 or (left and self._peek(left)):
            raise CorruptCodeError("the code has data after its last value")
