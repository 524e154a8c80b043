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

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sancodec.errors import CorruptCodeError, InvalidInputError

__all__ = ["decode_sparse", "dyadic_bands", "encode_sparse"]

RESET = 16
LEVEL_A0 = 16
MAX_K = 31
ESCAPE = 32  # a quotient this large is sent as ESCAPE one-bits, then the value in RAW_BITS bits
RAW_BITS = 32


class _Context:
    __slots__ = ("a", "n")

    def __init__(self, a0: int) -> None:
        self.a, self.n = a0, 1

    def k(self) -> int:
        k = 0
        while (self.n << k) < self.a and k < MAX_K:
            k += 1
        return k

    def update(self, v: int) -> None:
        self.a += v
        self.n += 1
        if self.n >= RESET:
            self.a, self.n = (self.a + 1) >> 1, self.n >> 1


def _contexts(bands: Sequence[int]) -> tuple[list[_Context], list[_Context], npt.NDArray[np.int64]]:
    edges = np.cumsum(bands)
    sizes = np.diff(edges, prepend=0)
    gaps = [_Context(max(2, int(s) // 4)) for s in sizes]
    levels = [_Context(LEVEL_A0) for _ in sizes]
    return gaps, levels, edges


def dyadic_bands(length: int, octaves: int = 6, slack: int = 64) -> list[int]:
    """Contexts for wavelet coefficients of a block: [0, L/64), then one band per octave up to
    [L/2, L + slack), the slack covering the few extra coefficients of odd lengths."""
    edges = [length >> j for j in range(octaves, 0, -1)] + [length + slack]
    return [b - a for a, b in zip([0, *edges[:-1]], edges, strict=True)]


def _band(edges: npt.NDArray[np.int64], offset: int) -> int:
    return min(int(np.searchsorted(edges, offset, side="right")), edges.size - 1)


def encode_sparse(
    positions: npt.ArrayLike, levels: npt.ArrayLike, origin: int, bands: Sequence[int]
) -> bytes:
    """Code strictly rising positions in [origin, origin + sum(bands)) with non-zero levels."""
    p = np.asarray(positions, dtype=np.int64) - origin
    lv = np.asarray(levels, dtype=np.int64)
    if p.size != lv.size or (
        p.size and (p[0] < 0 or p[-1] >= sum(bands) or np.any(np.diff(p) <= 0))
    ):
        raise InvalidInputError("positions must rise strictly inside the bands, one level each")
    if np.any(lv == 0):
        raise InvalidInputError("levels must be non-zero")
    gap_ctx, level_ctx, edges = _contexts(bands)
    writer, previous = _BitWriter(), -1
    for pos, level in zip(p.tolist(), lv.tolist(), strict=True):
        _put(writer, gap_ctx[_band(edges, previous + 1)], pos - previous - 1)
        _put(writer, level_ctx[_band(edges, pos)], 2 * level - 1 if level > 0 else -2 * level - 2)
        previous = pos
    return writer.bytes()


def decode_sparse(
    data: bytes, count: int, origin: int, bands: Sequence[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The inverse of encode_sparse; CorruptCodeError for anything that does not decode exactly."""
    if count < 0 or 2 * count > 8 * len(data):  # every value takes at least one bit
        raise CorruptCodeError(f"{count} values cannot fit in {len(data)} bytes")
    gap_ctx, level_ctx, edges = _contexts(bands)
    reader, previous = _BitReader(data), -1
    positions = np.empty(count, dtype=np.int64)
    levels = np.empty(count, dtype=np.int64)
    for i in range(count):
        previous += 1 + _get(reader, gap_ctx[_band(edges, previous + 1)])
        if previous >= edges[-1]:
            raise CorruptCodeError(f"position {origin + previous} lies beyond the layer's range")
        v = _get(reader, level_ctx[_band(edges, previous)])
        positions[i], levels[i] = previous, -(v + 2) // 2 if v % 2 == 0 else (v + 1) // 2
    reader.finish()
    return positions + origin, levels


def _put(writer: _BitWriter, context: _Context, v: int) -> None:
    k = context.k()
    q = v >> k
    if q >= ESCAPE:
        if v >= 1 << RAW_BITS:
            raise InvalidInputError(f"value {v} is too large to code")
        writer.write((1 << ESCAPE) - 1, ESCAPE)
        writer.write(v, RAW_BITS)
    else:
        writer.write(((1 << q) - 1) << 1, q + 1)  # q ones, then a zero
        writer.write(v & ((1 << k) - 1), k)
    context.update(v)


def _get(reader: _BitReader, context: _Context) -> int:
    k = context.k()
    q = reader.ones(ESCAPE)
    v = reader.read(RAW_BITS) if q == ESCAPE else (q << k) | reader.read(k)
    context.update(v)
    return v


class _BitWriter:
    def __init__(self) -> None:
        self._value, self._bits = 0, 0

    def write(self, value: int, bits: int) -> None:
        self._value = (self._value << bits) | value
        self._bits += bits

    def bytes(self) -> bytes:
        pad = -self._bits % 8
        return (self._value << pad).to_bytes((self._bits + pad) // 8, "big")


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = 8 * len(data)

    def read(self, bits: int) -> int:
        if bits > self._left:
            raise CorruptCodeError("the code ends before its last value")
        self._left -= bits
        return (self._value >> self._left) & ((1 << bits) - 1)

    def ones(self, limit: int) -> int:
        """Read ones up to a zero (consumed) or `limit` ones (no zero follows)."""
        count = 0
        while count < limit:
            if self.read(1) == 0:
                return count
            count += 1
        return count

    def finish(self) -> None:
        if self._left >= 8 or self._value & ((1 << self._left) - 1):
            raise CorruptCodeError("the code has data after its last value")
