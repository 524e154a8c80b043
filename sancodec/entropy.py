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
from typing import Any, TypeVar

import constriction
import numpy as np
import numpy.typing as npt

from sancodec.compiled import compiled
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
    "unzigzag_one",
    "zigzag",
    "zigzag_one",
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


Z = TypeVar("Z", np.int64, Ints)


def _zigzag(v: Z) -> Z:
    return (v << 1) ^ (v >> 63)


def _unzigzag(u: Z) -> Z:
    return (u >> 1) ^ -(u & 1)


# one formula each, for compiled loops (one value) and arrays alike
zigzag_one = compiled(_zigzag)  # 0, -1, 1, -2, ... to 0, 1, 2, 3, ... (2v, or -2v - 1 below 0)
unzigzag_one = compiled(_unzigzag)


def zigzag(values: npt.ArrayLike) -> Ints:
    return _zigzag(np.asarray(values, dtype=np.int64))


def unzigzag(values: npt.ArrayLike) -> Ints:
    return _unzigzag(np.asarray(values, dtype=np.int64))


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

    def bits(self, values: npt.ArrayLike) -> float:
        """Ideal code length of the values under this table, in bits (rate estimates)."""
        costs = _class_costs(self)
        return sum(costs[c] + max(c - 1, 0) for c in _bit_lengths(values))


# built once per row or table, kept beside them (not in them: they stay plain values)
@lru_cache(maxsize=65536)
def _categorical(key: SymbolRow | ClassTable) -> Any:
    """constriction's model of a row or a class table."""
    return _model.Categorical(key.probabilities(), perfect=False)


@lru_cache(maxsize=4096)
def _class_costs(table: ClassTable) -> list[float]:
    p = table.probabilities()
    return [float(c) for c in -np.log2(np.maximum(p / p.sum(), 2.0**-24))]


@lru_cache(maxsize=65536)
def row_costs(row: SymbolRow) -> npt.NDArray[np.float64]:
    """Ideal code length of each symbol of a row, in bits."""
    p = row.probabilities()
    return np.asarray(-np.log2(np.maximum(p / p.sum(), 2.0**-24)), dtype=np.float64)


def bit_lengths(values: Ints) -> Ints:
    """Bit length of each non-negative value below 2^53 (0 for 0): frexp's exponent, exact for
    integers a float64 holds exactly."""
    return np.frexp(np.asarray(values, dtype=np.float64))[1].astype(np.int64)


def _bit_lengths(values: npt.ArrayLike) -> list[int]:
    """Bit lengths of a few non-negative integers (a side field's), as Python ints: for so few,
    faster than `bit_lengths`, whose one NumPy call pays off on the arrays training counts."""
    return [int(v).bit_length() for v in np.asarray(values, dtype=np.int64).ravel().tolist()]


def _piece_sizes(classes: list[int]) -> list[int]:
    """The alphabet size of each piece below the leading ones of values of these bit lengths, in
    coding order: every value's lowest PIECE_BITS bits (fewer where it has fewer), then the rest
    of those that have more."""
    below = [c - 1 for c in classes if c > 1]
    return [1 << min(b, PIECE_BITS) for b in below] + [
        1 << (b - PIECE_BITS) for b in below if b > PIECE_BITS
    ]


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
        """Non-negative integers below 2^32 (a side field's few: coded with Python ints)."""
        v = np.asarray(values, dtype=np.int64).ravel().tolist()
        if not v:
            return
        if min(v) < 0 or max(v) > MAX_VALUE:
            raise InvalidInputError(f"a value to code is outside 0..{MAX_VALUE}")
        classes = [x.bit_length() for x in v]
        self._coder.encode(np.array(classes, dtype=np.int32), _categorical(table))
        below = [(x - (1 << (c - 1)), c - 1) for x, c in zip(v, classes, strict=True) if c > 1]
        if below:  # each value's bits below its leading one, as _piece_sizes orders them
            low = (1 << PIECE_BITS) - 1
            pieces = [r & low for r, _ in below] + [
                r >> PIECE_BITS for r, b in below if b > PIECE_BITS
            ]
            self._coder.encode(np.array(pieces, dtype=np.int32), _UNIFORM,
                               np.array(_piece_sizes(classes), dtype=np.int32))  # fmt: skip

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
    words = np.asarray(coder.get_compressed(), dtype=">u4")
    total = position + 2
    if words.size > total:  # constriction seals within two words after `position`
        raise RuntimeError("unexpected range coder seal")
    bits = 32 * total
    sealed = int.from_bytes(words.tobytes(), "big") << (32 * (total - words.size))
    low = sealed - ((sealed - lower) % (1 << 64))  # the interval's start, carries included
    high = low + width

    def point(count: int) -> int | None:  # the smallest count-byte point at or above the start
        shift = bits - 8 * count
        value = -(-low >> shift)
        return value if value << shift < high and value < 1 << (8 * count) else None

    # a count that has a point, the next one has too (its value times 256): the fewest is the
    # first count of a monotone predicate, found by bisection
    lo, hi = 0, bits // 8
    if point(hi) is None:
        raise RuntimeError("no point in the range coder's final interval")
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if point(mid) is not None else (mid + 1, hi)
    value = point(lo)
    assert value is not None
    return bytes(value.to_bytes(lo, "big"))


class Decoder:
    """Reads what an Encoder wrote, in the same order; CorruptCodeError when it cannot."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        padded = data + b"\0" * (-len(data) % 4)
        self._coder = constriction.stream.queue.RangeDecoder(
            np.frombuffer(padded, dtype=">u4").astype(np.uint32)
        )

    def symbols(self, count: int, row: SymbolRow) -> npt.NDArray[np.int32]:
        if count <= 0:
            return np.zeros(0, dtype=np.int32)
        return np.asarray(self._coder.decode(_categorical(row), count), dtype=np.int32)

    def integers(self, count: int, table: ClassTable) -> Ints:
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        classes = self._coder.decode(_categorical(table), count).tolist()
        sizes = _piece_sizes(classes)
        pieces = (
            self._coder.decode(_UNIFORM, np.array(sizes, dtype=np.int32)).tolist() if sizes else []
        )
        out, i, high = [], 0, len([c for c in classes if c > 1])
        for c in classes:
            value = (1 << (c - 1)) if c else 0
            if c > 1:
                value += pieces[i]
                if c - 1 > PIECE_BITS:
                    value += pieces[high] << PIECE_BITS
                    high += 1
                i += 1
            out.append(value)
        return np.array(out, dtype=np.int64)

    def finish(self) -> None:
        """A code ends with a non-zero byte (the encoder leaves trailing zeros off); bytes past the
        values' interval cannot be told from theirs, so nothing more is checked."""
        if self._data and self._data[-1] == 0:
            raise CorruptCodeError("the code ends with a zero byte")
