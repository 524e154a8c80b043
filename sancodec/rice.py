"""Golomb-Rice codes of non-negative integers, the entropy coder of the code format.

A value v with parameter k is written as q = v >> k one-bits, a zero-bit, then the k low bits of
v, most significant first. A quotient of ESCAPE or more is written as ESCAPE one-bits followed by v
in RAW_BITS bits, so no value costs more than ESCAPE + RAW_BITS bits. Bits are packed MSB-first;
the last byte is padded with zeros. Streams hold a known number of values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sancodec.errors import CorruptCodeError, InvalidInputError

__all__ = ["MAX_K", "best_k", "rice_decode", "rice_encode", "unzigzag", "zigzag"]

MAX_K = 31
ESCAPE = 32
RAW_BITS = 32

Ints = npt.NDArray[np.int64]
_WEIGHTS = 1 << np.arange(RAW_BITS - 1, -1, -1, dtype=np.int64)  # bit j of a RAW_BITS-bit field


def zigzag(values: npt.ArrayLike) -> Ints:
    """Signed to non-negative: 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ..."""
    v = np.asarray(values, dtype=np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(values: npt.ArrayLike) -> Ints:
    v = np.asarray(values, dtype=np.int64)
    return np.where(v % 2 == 0, v // 2, -(v + 1) // 2)


def _lengths(v: Ints, k: int) -> Ints:
    q = v >> k
    return np.where(q < ESCAPE, q + 1 + k, ESCAPE + RAW_BITS)


def best_k(values: npt.ArrayLike) -> int:
    """The parameter that codes these values in the fewest bits."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return 0
    costs = [int(_lengths(v, k).sum()) for k in range(MAX_K + 1)]
    return int(np.argmin(costs))


def rice_encode(values: npt.ArrayLike, k: int | npt.ArrayLike) -> bytes:
    """Encode values with one parameter, or one per value (segments of one stream)."""
    v = np.asarray(values, dtype=np.int64)
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), v.shape)
    if ks.size and (ks.min() < 0 or ks.max() > MAX_K):
        raise InvalidInputError(f"Rice parameters must be in [0, {MAX_K}]")
    if v.size and (v.min() < 0 or v.max() >= 2**RAW_BITS):
        raise InvalidInputError(f"Rice codes take integers in [0, 2^{RAW_BITS})")
    if v.size == 0:
        return b""
    escaped = (v >> ks) >= ESCAPE
    ones = np.where(escaped, ESCAPE, v >> ks)  # unary run of each value
    tail_bits = np.where(escaped, RAW_BITS, ks)  # bits after the run (and its zero, if any)
    tail = np.where(escaped, v, v & ((1 << ks) - 1))
    lengths = ones + (~escaped) + tail_bits
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    bits = np.zeros(int(lengths.sum()), dtype=np.uint8)
    run = np.repeat(starts, ones) + (
        np.arange(int(ones.sum())) - np.repeat(np.cumsum(ones) - ones, ones)
    )
    bits[run] = 1
    tail_start = starts + ones + (~escaped)
    for j in range(int(tail_bits.max())):
        has = tail_bits > j
        bits[(tail_start + j)[has]] = (tail[has] >> (tail_bits[has] - 1 - j)) & 1
    return np.packbits(bits).tobytes()


def rice_decode(data: bytes, count: int, k: int | npt.ArrayLike) -> Ints:
    """Decode `count` values (one parameter, or one per value); CorruptCodeError if the bits run
    out or anything but zero padding follows the last value."""
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (max(count, 0),))
    if count < 0 or (ks.size and (ks.min() < 0 or ks.max() > MAX_K)):
        raise CorruptCodeError(f"bad Rice stream header (count {count})")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    zeros = np.flatnonzero(bits == 0)
    out = np.empty(count, dtype=np.int64)
    pos = 0
    for i in range(count):
        k_i = int(ks[i])
        z = np.searchsorted(zeros, pos)
        end = int(zeros[z]) if z < zeros.size else bits.size
        q = min(end - pos, ESCAPE)
        width = RAW_BITS if q == ESCAPE else k_i
        start = pos + q + (q < ESCAPE)
        if start + width > bits.size:
            raise CorruptCodeError("Rice stream ends before its last value")
        tail = int(bits[start : start + width] @ _WEIGHTS[RAW_BITS - width :])
        out[i] = tail if q == ESCAPE else (q << k_i) | tail
        pos = start + width
    if bits.size - pos >= 8 or bits[pos:].any():
        raise CorruptCodeError("Rice stream has trailing data after its last value")
    return out
