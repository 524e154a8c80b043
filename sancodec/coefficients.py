"""A block's quantized residual coefficients in coding order, with their contexts and symbols, and
the rate estimate that the layer choice and rate control share with the coder.

A channel's residual rows may stand for a step half an octave finer or coarser than its own: the
encoder picks the row shift (SHIFTS) that codes its coefficients in the fewest ideal bits, since a
signal's activity relative to its step differs from the training recordings'.

The encoder's levels are rate-distortion quantized (`quantize_residual`): each rounded level, or
one nearer zero where that lowers squared error + λ·bits under the tables. The decoder needs no
word of it: it reads levels, whichever the encoder chose.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from sancodec.bandcontexts import Order, code_order, quantized_order
from sancodec.codes import ResidualLayer
from sancodec.entropy import ClassTable, zigzag
from sancodec.errors import InvalidInputError
from sancodec.quantization import Quantizer
from sancodec.residual import WaveletTransform, band_sizes
from sancodec.tables import CONTEXTS, CodingTables, band_class

__all__ = ["SHIFTS", "SHIFT_STEP", "Coefficients", "ResidualEstimate", "encode_residual",
           "estimate_residual", "quantize_residual", "rd_lambda", "residual_bits"]  # fmt: skip

Ints = npt.NDArray[np.int64]
Symbols = npt.NDArray[np.int32]
SHIFTS = (0, -1, 1)
SHIFT_STEP = 4  # eighths of an octave per shift


def rd_lambda(step: float) -> float:
    """The slope of a uniform quantizer's D(R) at step Δ (Δ² ln 2 / 6): distortion per bit, what
    the quantizer and the layer choice weigh bits by."""
    return step * step * math.log(2) / 6


def encode_residual(residual: npt.ArrayLike, transform: WaveletTransform, step_exp: int,
                    tables: CodingTables) -> ResidualLayer:  # fmt: skip
    """A block's residual transformed and quantized as the encoder codes it."""
    x = np.asarray(residual, dtype=np.float64)
    sizes = band_sizes(transform.spec, x.size)
    return ResidualLayer.from_levels(
        step_exp, quantize_residual(transform.forward(x), sizes, tables, step_exp).levels
    )


def _check_size(count: int, sizes: tuple[int, ...], ndim: int = 1) -> None:
    if count != sum(sizes) or ndim != 1:
        raise InvalidInputError(f"{count} residual coefficients for bands of {sum(sizes)}")


@lru_cache(maxsize=256)
def _sizes_array(sizes: tuple[int, ...]) -> Ints:
    out = np.array(sizes, dtype=np.int64)
    out.flags.writeable = False
    return out


class Coefficients:
    """A block's quantized coefficients as the coder codes them (`bandcontexts.code_order`):
    grouped by band, pass and context, with their escapes and symbol counts, found once."""

    def __init__(self, dense: Ints, sizes: tuple[int, ...], order: Order | None = None) -> None:
        """`order`: code_order of `dense`, found already (quantized_order's)."""
        _check_size(np.size(dense), sizes, np.ndim(dense))
        self.sizes = sizes
        (self._symbols, self._values, self._ends, self.excess, self._escape_ends,
         self._counts) = order if order is not None else code_order(
             np.asarray(dense, dtype=np.int64), _sizes_array(sizes))  # fmt: skip

    def counts(self) -> Ints:
        """How often each (band, context, symbol) occurs, flat: (bands x CONTEXTS x SYMBOLS)."""
        return self._counts

    def bands(self) -> Iterator[tuple[int, list[tuple[int, Symbols, Ints]], Ints]]:
        """Band by band: (its class, its groups of (context, symbols, values) in coding
        order, even pass before odd, contexts ascending in each, its escapes' excess)."""
        ends, escape_ends = self._ends.tolist(), self._escape_ends.tolist()
        lo, first = 0, 0
        for i in range(len(self.sizes)):
            groups = []
            for g in range(2 * CONTEXTS * i, 2 * CONTEXTS * (i + 1)):
                hi = ends[g]
                if hi > lo:
                    groups.append((g % CONTEXTS, self._symbols[lo:hi], self._values[lo:hi]))
                lo = hi
            last = escape_ends[i]
            yield band_class(i, len(self.sizes)), groups, self.excess[first:last]
            first = last


def best_shift(
    coefficients: Coefficients, tables: CodingTables, step_exp: int
) -> tuple[int, float]:
    """The row shift (SHIFTS) that codes the coefficients in the fewest ideal bits, its own
    field and the escapes counted; 0 on a tie, then -1. Returns (shift, bits)."""
    bands, counts = len(coefficients.sizes), coefficients.counts().astype(np.float64)
    own = _shift_bits(tables.table("row_shift"))
    bits = [own[i] + tables.band_costs(step_exp + SHIFT_STEP * shift, bands).ravel() @ counts
            for i, shift in enumerate(SHIFTS)]  # fmt: skip
    best = min(range(len(SHIFTS)), key=bits.__getitem__)  # the first of the fewest: 0, then -1
    return SHIFTS[best], float(bits[best]) + tables.table("escape").bits(coefficients.excess)


@lru_cache(maxsize=64)
def _shift_bits(table: ClassTable) -> list[float]:
    return [table.bits([v]) for v in zigzag(SHIFTS).tolist()]


@dataclass(frozen=True, eq=False)
class ResidualEstimate:
    """A block's dense quantized coefficients at a step, in coding order, with the row shift
    that codes them in the fewest ideal bits and those bits (the shift's field and the escapes
    included): the encoder codes exactly these."""

    step_exp: int
    levels: Ints
    coefficients: Coefficients
    shift: int
    bits: float


def estimate_residual(dense: npt.ArrayLike, sizes: tuple[int, ...], tables: CodingTables,
                      step_exp: int) -> ResidualEstimate:  # fmt: skip
    levels = np.asarray(dense, dtype=np.int64)
    coefficients = Coefficients(levels, sizes)
    shift, bits = best_shift(coefficients, tables, step_exp)
    return ResidualEstimate(step_exp, levels, coefficients, shift, bits)


def quantize_residual(coefficients: npt.ArrayLike, sizes: tuple[int, ...], tables: CodingTables,
                      step_exp: int) -> ResidualEstimate:  # fmt: skip
    """The levels the encoder codes a residual's coefficients (flat, bands of `sizes`) with at a
    step, as an estimate: each rounded (`Quantizer`, which refuses non-finite values and levels
    beyond 31 bits), then moved one nearer zero where that lowers its squared error + rd_lambda
    times its bits under the tables' rows at this step (`bandcontexts.quantized_order`)."""
    values = np.asarray(coefficients, dtype=np.float64)
    _check_size(values.size, sizes, values.ndim)
    quantizer = Quantizer(step_exp)
    levels, order = quantized_order(quantizer.quantize(values), _sizes_array(sizes), values,
                                    quantizer.step, tables.band_costs(step_exp, len(sizes)),
                                    rd_lambda(1.0))  # fmt: skip
    ordered = Coefficients(levels, sizes, order)
    shift, bits = best_shift(ordered, tables, step_exp)
    return ResidualEstimate(step_exp, levels, ordered, shift, bits)


def residual_bits(
    dense: Ints, sizes: tuple[int, ...], tables: CodingTables, step_exp: int
) -> float:
    """The ideal code length of a residual layer's coefficients (and their row shift): the rate
    control's estimate."""
    return estimate_residual(dense, sizes, tables, step_exp).bits
