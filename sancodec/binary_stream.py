"""Adaptive binary range coding of sparse (position, level) lists: the second entropy coder.

The same values as the Golomb-Rice coder of `sancodec.sparse_stream` (each position as the gap
from the previous one minus 1, then its level), coded closer to their entropy: a value v >= 0
is binarized as Exp-Golomb of order 0 (e ones and a zero, where e = bit_length(v + 1) - 1, then
the e low bits of v + 1), a gap as itself, a level as |level| - 1 followed by its sign. Every
prefix bit is coded with an adaptive probability of its own context (stream, band, min(bit
index, 12)); suffix and sign bits are coded as equiprobable. Bands and their choice are as in
`sparse_stream`: a gap uses the band where the previous position + 1 lies, a level its own
position's band.

The range coder is LZMA's (a 32-bit range renormalized a byte at a time, carries propagated
through a cached byte), with 11-bit probabilities that start at 1/2 and move towards each coded
bit by 1/2, 1/3, 1/4 ... of the way, then by 1/32 once a context has seen 30 bits: they learn
fast, as the few hundred values of a block need, then settle. The encoder's first output byte, always 0, is not stored. Every model starts afresh
in each call, so layers (and blocks) stay independent. The decoder reads exactly the bytes the
encoder wrote; anything else raises CorruptCodeError.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sancodec.errors import CorruptCodeError
from sancodec.sparse_stream import MAX_LEVEL, LayerValues, band_of, check_bands, layer_values

__all__ = [
    "RangeDecoder",
    "RangeEncoder",
    "decode_binary",
    "encode_binary",
    "get",
    "get_entries",
    "get_level",
    "probabilities",
    "put",
    "put_entries",
    "put_level",
    "unzigzag",
    "zigzag",
]

PROB_BITS = 11
PROB_INIT = 1 << (PROB_BITS - 1)
MOVE_BITS = 5
TOP = 1 << 24
MAX_BIN = 12  # prefix bits from this index on share one context
MAX_PREFIX = 33  # v < 2^32: v + 1 has at most 33 bits
LEAN_PADDING = 3


def probabilities(groups: int) -> list[int]:
    """One probability per (group, prefix bin index up to MAX_BIN), and after them how many bits
    each has seen (its adaptation slows as it learns: a move of 1/2, 1/3 ... then 1/2^MOVE_BITS).
    Group g's bins start at index g * (MAX_BIN + 1)."""
    size = groups * (MAX_BIN + 1)
    return [PROB_INIT] * size + [0] * size


def _adapt(probs: list[int], i: int, p: int, bit: int) -> int:
    """The probability after coding `bit`: a count-like start, then a fixed rate."""
    seen = len(probs) // 2 + i
    n = probs[seen]
    probs[seen] = n + 1
    divisor = n + 2 if n + 2 < 1 << MOVE_BITS else 1 << MOVE_BITS
    target = 0 if bit else (1 << PROB_BITS)
    p += (target - p) // divisor
    return min(max(p, 31), (1 << PROB_BITS) - 31)


class RangeEncoder:
    def __init__(self) -> None:
        self.low, self.range, self.cache, self.cache_size = 0, 0xFFFFFFFF, 0, 1
        self.out = bytearray()

    def bit(self, probs: list[int], i: int, bit: int) -> None:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        probs[i] = _adapt(probs, i, p, bit)
        if bit:
            self.low += bound
            self.range -= bound
        else:
            self.range = bound
        while self.range < TOP:
            self.range <<= 8
            self._shift_low()

    def direct(self, value: int, bits: int) -> None:
        for shift in range(bits - 1, -1, -1):
            self.range >>= 1
            if (value >> shift) & 1:
                self.low += self.range
            while self.range < TOP:
                self.range <<= 8
                self._shift_low()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low >= 1 << 32:
            carry = self.low >> 32
            temp = self.cache
            while True:
                self.out.append((temp + carry) & 0xFF)
                temp = 0xFF
                self.cache_size -= 1
                if not self.cache_size:
                    break
            self.cache = (self.low >> 24) & 0xFF
        self.cache_size += 1
        self.low = (self.low & 0x00FFFFFF) << 8

    def finish(self, lean: bool = False) -> bytes:
        """The code: LZMA's 5-byte flush, or (`lean`) the value of [low, low + range) with the
        most trailing zero bits, which leaves out the last 3 bytes (zeros the decoder supplies)."""
        if lean:
            mask = 0xFFFFFFFF
            while (self.low + mask) & ~mask >= self.low + self.range:
                mask >>= 1  # stops at 2^24 - 1 or above: range >= 2^24
            self.low = (self.low + mask) & ~mask
        for _ in range(2 if lean else 5):
            self._shift_low()
        return bytes(self.out[1:])  # the first byte is always 0


class RangeDecoder:
    def __init__(self, data: bytes, lean: bool = False) -> None:
        if lean:
            data += bytes(LEAN_PADDING)  # the zeros a lean flush leaves out
        if len(data) < 4:
            raise CorruptCodeError(f"a range code has at least 4 bytes, got {len(data)}")
        self.data, self.pos = data, 4
        self.code, self.range = int.from_bytes(data[:4], "big"), 0xFFFFFFFF

    def _next(self) -> int:
        if self.pos >= len(self.data):
            raise CorruptCodeError("the code ends before its last value")
        self.pos += 1
        return self.data[self.pos - 1]

    def bit(self, probs: list[int], i: int) -> int:
        p = probs[i]
        bound = (self.range >> PROB_BITS) * p
        if self.code < bound:
            self.range = bound
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            bit = 1
        probs[i] = _adapt(probs, i, p, bit)
        while self.range < TOP:
            self.range <<= 8
            self.code = ((self.code << 8) | self._next()) & 0xFFFFFFFF
        return bit

    def direct(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            self.range >>= 1
            bit = 1 if self.code >= self.range else 0
            if bit:
                self.code -= self.range
            value = (value << 1) | bit
            while self.range < TOP:
                self.range <<= 8
                self.code = ((self.code << 8) | self._next()) & 0xFFFFFFFF
        return value

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise CorruptCodeError("the code has data after its last value")


def put(enc: RangeEncoder, probs: list[int], base: int, v: int) -> None:
    n = v + 1
    e = n.bit_length() - 1
    for i in range(e):
        enc.bit(probs, base + min(i, MAX_BIN), 1)
    enc.bit(probs, base + min(e, MAX_BIN), 0)
    enc.direct(n, e)  # the e low bits of v + 1 (its top bit is implied)


def get(dec: RangeDecoder, probs: list[int], base: int) -> int:
    e = 0
    while dec.bit(probs, base + min(e, MAX_BIN)):
        e += 1
        if e >= MAX_PREFIX:
            raise CorruptCodeError("a value's prefix is longer than any value allowed")
    return ((1 << e) | dec.direct(e)) - 1


def zigzag(v: int) -> int:
    """A signed integer as a value >= 0: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ..."""
    return 2 * v if v >= 0 else -2 * v - 1


def unzigzag(u: int) -> int:
    return u >> 1 if u % 2 == 0 else -((u + 1) >> 1)


def put_level(enc: RangeEncoder, probs: list[int], base: int, level: int) -> None:
    """A non-zero level: |level| - 1 as a value, then one equiprobable sign bit (1: negative)."""
    put(enc, probs, base, abs(level) - 1)
    enc.direct(1 if level < 0 else 0, 1)


def get_level(dec: RangeDecoder, probs: list[int], base: int) -> int:
    magnitude = get(dec, probs, base) + 1
    if magnitude > MAX_LEVEL:
        raise CorruptCodeError(f"level {magnitude} is beyond ±2^31")
    return -magnitude if dec.direct(1) else magnitude


def put_entries(enc: RangeEncoder, probs: list[int], first: int, layer: LayerValues,
                bands: int) -> None:  # fmt: skip
    """A layer's (gap, level) entries: a gap in group first + its band, a level in group
    first + bands + its band, the bands as layer_values chose them."""
    for gap, gb, level, lb in zip(*(v.tolist() for v in layer), strict=True):
        put(enc, probs, (first + gb) * (MAX_BIN + 1), gap)
        put_level(enc, probs, (first + bands + lb) * (MAX_BIN + 1), level)


def get_entries(dec: RangeDecoder, probs: list[int], first: int, count: int,
                bands: Sequence[int]) -> tuple[list[int], list[int]]:  # fmt: skip
    """The inverse of put_entries: `count` positions (from 0) and their levels."""
    edges, n = np.cumsum(bands).tolist(), len(bands)
    positions, levels, previous = [], [], -1
    for _ in range(count):
        previous += 1 + get(dec, probs, (first + band_of(edges, previous + 1)) * (MAX_BIN + 1))
        if previous >= edges[-1]:
            raise CorruptCodeError(f"position {previous} lies beyond the layer's range")
        positions.append(previous)
        levels.append(get_level(dec, probs, (first + n + band_of(edges, previous)) * (MAX_BIN + 1)))
    return positions, levels


def encode_binary(
    positions: npt.ArrayLike, levels: npt.ArrayLike, origin: int, bands: Sequence[int]
) -> bytes:
    """Code strictly rising positions in [origin, origin + sum(bands)) with non-zero levels."""
    layer = layer_values(positions, levels, origin, bands)
    probs, enc = probabilities(2 * len(bands)), RangeEncoder()
    put_entries(enc, probs, 0, layer, len(bands))
    return enc.finish()


def decode_binary(
    data: bytes, count: int, origin: int, bands: Sequence[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The inverse of encode_binary; CorruptCodeError for anything that does not decode exactly."""
    check_bands(bands)
    if count < 0 or count > 8 * len(data):  # every value sends its sign as one whole bit
        raise CorruptCodeError(f"{count} values cannot fit in {len(data)} bytes")
    probs, dec = probabilities(2 * len(bands)), RangeDecoder(data)
    positions, levels = get_entries(dec, probs, 0, count, bands)
    dec.finish()
    return np.array(positions, dtype=np.int64) + origin, np.array(levels, dtype=np.int64)
