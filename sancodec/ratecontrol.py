"""Rate control of the residual layer: the step of each block, chosen without coding it many times.

- A PRDN cap per block: the coarsest step whose quantized coefficients, inverted, meet the cap
  (a bisection on quantize + inverse transform; nothing is entropy-coded).
- A bit budget per block: the finest step whose rate, estimated by the very tables that code it
  (`coefficients.residual_bits`), fits; the block is coded once, and coarser only if its real bytes
  overshoot. The budget is never exceeded: where even no residual layer fits, the block says so.
- A PRDN target for the whole stream: one step for every block, steered slowly by
  the PRDN pooled so far (at most a quarter octave a block), so that bits go where they buy the
  most fidelity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.coefficients import ResidualEstimate, quantize_residual, rd_lambda
from sancodec.errors import InvalidInputError
from sancodec.metrics import prdn
from sancodec.quantization import Quantizer
from sancodec.residual import WaveletTransform
from sancodec.tables import CodingTables

__all__ = [
    "STEP_SEARCH",
    "Steering",
    "coarsest_meeting_prdn",
    "finest_within_bits",
    "residual_cost",
]

Samples = npt.NDArray[np.float64]
STEP_SEARCH = 96  # steps looked at around the default, 1/8 octave each: 2^±12
MAX_MOVE = 2  # a steered step moves at most a quarter octave a block


def _quantized(coefficients: Samples, sizes: tuple[int, ...], tables: CodingTables,
               step_exp: int) -> ResidualEstimate | None:  # fmt: skip
    """The coder's levels at a step (quantize_residual), or None where the step is too fine for
    them (31 bits): a search moves coarser from it."""
    try:
        return quantize_residual(coefficients, sizes, tables, step_exp)
    except InvalidInputError:
        return None


def coarsest_meeting_prdn(coefficients: Samples, x: Samples, base: Samples,
                          transform: WaveletTransform, tables: CodingTables,
                          sizes: tuple[int, ...], default: int, cap_percent: float) -> int:  # fmt: skip
    """The coarsest step exp (within STEP_SEARCH of default) at which the block meets the cap;
    `coefficients`: the transform of x - base."""

    def meets(step_exp: int) -> bool:
        quantized = _quantized(coefficients, sizes, tables, step_exp)
        if quantized is None:
            return True
        approx = base + transform.inverse(quantized.levels * 2.0 ** (step_exp / 8), x.size)
        return prdn(x, approx) <= cap_percent

    lo, hi = default - STEP_SEARCH, default + STEP_SEARCH
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid - 1)
    return lo


def finest_within_bits(coefficients: Samples, sizes: tuple[int, ...], tables: CodingTables,
                       default: int, bits: float) -> int | None:  # fmt: skip
    """The finest step exp whose estimated coefficient bits fit in `bits`; None if none does."""

    def fits(step_exp: int) -> bool:
        quantized = _quantized(coefficients, sizes, tables, step_exp)
        return quantized is not None and quantized.bits <= bits

    lo, hi = default - STEP_SEARCH, default + STEP_SEARCH
    if not fits(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo


@dataclass
class Steering:
    """One residual step for a stream, steered toward a pooled PRDN target between blocks."""

    target_percent: float
    step_exp: int
    error: float = 0.0  # sum of squared errors so far
    energy: float = 0.0  # sum of squared deviations from each block's mean

    def observe(self, x: Samples, reconstruction: Samples) -> None:
        """Take a finished block; the next block's step moves toward the target by half the
        log-ratio of the pooled PRDN to it (PRDN grows about as the step), at most MAX_MOVE."""
        self.error += float(np.sum((x - reconstruction) ** 2))
        self.energy += float(np.sum((x - x.mean()) ** 2))
        if self.energy <= 0:
            return
        pooled = 100.0 * math.sqrt(self.error / self.energy)
        if pooled > 0:
            move = round(4 * math.log2(self.target_percent / pooled))
            self.step_exp += max(-MAX_MOVE, min(MAX_MOVE, move))


def residual_cost(residual: Samples, transform: WaveletTransform, step_exp: int,
                  tables: CodingTables, sizes: tuple[int, ...]) -> tuple[ResidualEstimate, float]:  # fmt: skip
    """A block's residual at this step: its estimate (the levels the coder codes:
    `quantize_residual`'s, which refuses levels beyond 31 bits), and its distortion + λ·bits
    (squared model units), what the layer choice weighs."""
    c = transform.forward(residual)
    estimate, step = quantize_residual(c, sizes, tables, step_exp), Quantizer(step_exp).step
    error = float(np.sum((c - estimate.levels * step) ** 2))
    return estimate, error + rd_lambda(step) * estimate.bits
