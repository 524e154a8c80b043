"""Entropy models and coders on constriction's range coder: whole arrays per call, never a value.

Two kinds of model make up every table of the format (docs/sanc-format.md gives the arithmetic,
so a reader in another language rebuilds them bit for bit):
- `SymbolRow(zero, decay)`: a quantized coefficient v. P(0) = zero/2^16; |v| = k in 1..K has
  (1 - P0)(1 - r) r^(k-1) and an escape beyond K has (1 - P0) r^K (r = decay/2^16), each split
  evenly by sign. Symbol 0 is v = 0, 2k-1 is +k, 2k is -k, 2K+1 and 2K+2 are the escapes (+, -).
- `ClassTable(first, weights)`: a non-negative integer coded as its bit length c (0..32) under
  P(c) proportional to 2^(w/2) (w the half-bit weight of class c, 0 outside the table), then its
  c-1 bits below the leading one, uniformly, in pieces of at most 16 bits.

Probabilities go to constriction's `Categorical(p, perfect=False)`, which rounds them to its
fixed-point precision and keeps every symbol codable. A code is the shortest string of bytes that,
read as the range coder's 32-bit words in big-endian order with zero bytes padded after it, is a
point of the coder's final interval (`Encoder.finish`): every such point decodes the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import constriction
import numpy as np
import numpy.typing as npt

from sancodec.errors import CorruptCodeError, InvalidInputError

__all__ = [
    "CLASSES",
    "CODER_ERRORS",
    "MAGNITUDES",
    "SYMBOLS",
    "ClassTable",
    "Decoder",
    "Encoder",
    "SymbolRow",
    "unzigzag",
    "zigzag",
]

# what constriction raises for data no model can have written (it says so with an assertion)
CODER_ERRORS = (ValueError, OverflowError, RuntimeError, AssertionError)
MAGNITUDES = 31  # K: |v| up to this has its own symbol; beyond, an escape and the excess
SYMBOLS = 2 * MAGNITUDES + 3  # a row's symbols: 0, +-1 .. +-K, the two escapes
CLASSES = 33  # bit lengths 0..32
PIECE_BITS = 16
MAX_VALUE = (1 << 32) - 1
Ints = npt.NDArray[np.int64]
_model = constriction.stream.model
_UNIFORM = _model.Uniform()


def zigzag(values: npt.ArrayLike) -> Ints:
    """0, -1, 1, -2, ... to 0, 1, 2, 3, ... (2v for v >= 0, -2v - 1 below)."""
    v = np.asarray(values, dtype=np.int64)
    return np.asarray((v << 1) ^ (v >> 63), dtype=np.int64)


def unzigzag(values: npt.ArrayLike) -> Ints:
    u = np.asarray(values, dtype=np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


@dataclass(frozen=True)
class SymbolRow:
    """The model of one band and context: zero and decay in units of 2^-16."""

    zero: int
    decay: int

    def __post_init__(self) -> None:
        for name, value in (("zero", self.zero), ("decay", self.decay)):
            if not 1 <= value < 1 << 16:
                raise InvalidInputError(f"a symbol row's {name} must be in 1..65535, got {value}")

    def probabilities(self) -> npt.NDArray[np.float64]:
        p0, r = self.zero / 65536.0, self.decay / 65536.0
        out = np.empty(SYMBOLS)
        out[0] = p0
        mass = (1.0 - p0) * (1.0 - r)
        for k in range(1, MAGNITUDES + 1):  # repeated products: the same floats in any language
            out[2 * k - 1] = out[2 * k] = mass / 2.0
            mass *= r
        out[2 * MAGNITUDES + 1] = out[2 * MAGNITUDES + 2] = (1.0 - p0) * r**MAGNITUDES / 2.0
        return out


@dataclass(frozen=True)
class ClassTable:
    """Half-bit log weights of bit-length classes first .. first + len(weights) - 1."""

    first: int
    weights: tuple[int, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.first < CLASSES or self.first + len(self.weights) > CLASSES:
            raise InvalidInputError(f"a class table must lie within classes 0..{CLASSES - 1}")
        if not self.weights or any(not 0 <= w < 64 for w in self.weights):
            raise InvalidInputError("class weights must be 0..63 and at least one")
        object.__setattr__(self, "weights", tuple(int(w) for w in self.weights))

    def probabilities(self) -> npt.NDArray[np.float64]:
        out = np.zeros(CLASSES)
        for i, w in enumerate(self.weights):
            out[self.first + i] = 2.0 ** (w // 2) * (np.sqrt(2.0) if w % 2 else 1.0)
        return out

    def bits(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Ideal code length of each value under this table (rate estimates)."""
        c = bit_lengths(np.asarray(values, dtype=np.int64))
        p = _class_costs(self)
        return p[c] + np.maximum(c - 1, 0)


@lru_cache(maxsize=65536)
def _categorical(key: SymbolRow | ClassTable) -> Any:
    p = key.probabilities()
    return _model.Categorical(p, perfect=False)


@lru_cache(maxsize=4096)
def _class_costs(table: ClassTable) -> npt.NDArray[np.float64]:
    p = table.probabilities()
    return np.asarray(-np.log2(np.maximum(p / p.sum(), 2.0**-24)), dtype=np.float64)


@lru_cache(maxsize=65536)
def row_costs(row: SymbolRow) -> npt.NDArray[np.float64]:
    """Ideal code length of each symbol of a row, in bits."""
    p = row.probabilities()
    return np.asarray(-np.log2(np.maximum(p / p.sum(), 2.0**-24)), dtype=np.float64)


def bit_lengths(values: Ints) -> Ints:
    """Bit length of each non-negative value below 2^53 (0 for 0): frexp's exponent, exact for
    integers a float64 holds exactly."""
    return np.frexp(np.asarray(values, dtype=np.float64))[1].astype(np.int64)


def symbols_of(values: Ints) -> tuple[npt.NDArray[np.int32], Ints]:
    """Row symbols of quantized values, and the escapes' excess (|v| - K - 1) in order."""
    magnitude = np.abs(values)
    escape = magnitude > MAGNITUDES
    symbols = np.where(values > 0, 2 * magnitude - 1, 2 * magnitude)
    symbols[escape] = np.where(values[escape] > 0, 2 * MAGNITUDES + 1, 2 * MAGNITUDES + 2)
    return symbols.astype(np.int32), magnitude[escape] - MAGNITUDES - 1


class Encoder:
    """One range code: symbols under rows, integers under class tables."""

    def __init__(self) -> None:
        self._coder = constriction.stream.queue.RangeEncoder()

    def symbols(self, symbols: npt.NDArray[np.int32], row: SymbolRow) -> None:
        if symbols.size:
            self._coder.encode(symbols, _categorical(row))

    def integers(self, values: npt.ArrayLike, table: ClassTable) -> None:
        """Non-negative integers below 2^32."""
        v = np.asarray(values, dtype=np.int64)
        if not v.size:
            return
        if v.min() < 0 or v.max() > MAX_VALUE:
            raise InvalidInputError(f"a value to code is outside 0..{MAX_VALUE}")
        classes = bit_lengths(v)
        self._coder.encode(classes.astype(np.int32), _categorical(table))
        bits = np.maximum(classes - 1, 0)
        rest = v - np.where(classes > 0, np.left_shift(1, bits, dtype=np.int64), 0)
        while np.any(bits > 0):  # low pieces first, each at most PIECE_BITS wide
            width = np.minimum(bits, PIECE_BITS)
            take = width > 0
            sizes = np.left_shift(1, width[take], dtype=np.int64)
            self._coder.encode(
                (rest[take] & (sizes - 1)).astype(np.int32),
                _UNIFORM,
                np.maximum(sizes, 2).astype(np.int32),
            )
            rest, bits = np.right_shift(rest, width), bits - width

    def finish(self) -> bytes:
        return shortest_code(self._coder)


def shortest_code(coder: Any) -> bytes:
    """The fewest bytes whose zero-padded value lies in the range coder's final interval.

    After the last symbol the coder holds `position` words and a 64-bit interval [lower, lower +
    range) for the two words after them (with a carry into the words before when lower + range
    passes 2^64). Its own sealed words are one point of that interval; the code is instead the
    smallest point with the most trailing zero bytes, and those bytes are left off.
    """
    position, (lower, width) = coder.pos()
    words = [int(w) for w in coder.get_compressed()]
    total = position + 2
    if len(words) > total:  # constriction seals within two words after `position`
        raise RuntimeError("unexpected range coder seal")
    point = 0
    for w in words + [0] * (total - len(words)):
        point = (point << 32) | w
    bits = 32 * total
    low = point - ((point - lower) % (1 << 64))  # the interval's start, carries included
    high = low + width
    for count in range(bits // 8 + 1):
        shift = bits - 8 * count
        value = -(-low >> shift)  # the smallest count-byte point at or above the start
        if value << shift < high and value < 1 << (8 * count):
            return bytes(value.to_bytes(count, "big"))
    raise RuntimeError("no point in the range coder's final interval")


class Decoder:
    """Reads what an Encoder wrote, in the same order; CorruptCodeError when it cannot."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        padded = data + b"\0" * (-len(data) % 4)
        self._coder = constriction.stream.queue.RangeDecoder(
            np.frombuffer(padded, dtype=">u4").astype(np.uint32)
        )

    def symbols(self, count: int, row: SymbolRow) -> npt.NDArray[np.int64]:
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._coder.decode(_categorical(row), count), dtype=np.int64)

    def integers(self, count: int, table: ClassTable) -> Ints:
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        classes = np.asarray(self._coder.decode(_categorical(table), count), dtype=np.int64)
        bits = np.maximum(classes - 1, 0)
        out = np.where(classes > 0, np.left_shift(1, bits, dtype=np.int64), 0)
        shift = np.zeros(count, dtype=np.int64)
        while np.any(bits > 0):
            width = np.minimum(bits, PIECE_BITS)
            take = width > 0
            sizes = np.left_shift(1, width[take], dtype=np.int64)
            piece = np.asarray(
                self._coder.decode(_UNIFORM, np.maximum(sizes, 2).astype(np.int32)), dtype=np.int64
            )
            out[take] += np.left_shift(piece, shift[take])
            shift, bits = shift + width, bits - width
        return out

    def finish(self) -> None:
        """A code ends with a non-zero byte (the encoder leaves trailing zeros off); bytes past the
        values' interval cannot be told from theirs, so nothing more is checked."""
        if self._data and self._data[-1] == 0:
            raise CorruptCodeError("the code ends with a zero byte")
