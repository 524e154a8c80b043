"""Uniform amplitude quantization on a logarithmic grid of steps: step = 2^(step_exp / 8)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.compiled import compiled
from sancodec.errors import InvalidInputError

__all__ = ["LEVEL_LIMIT", "STEPS_PER_OCTAVE", "Quantizer"]

STEPS_PER_OCTAVE = 8
# Levels travel as sint32; keep a margin so sums of levels never overflow either.
LEVEL_LIMIT = 2**30
STEP_EXP_LIMIT = 2048  # 2^(+-256): far beyond any float32 amplitude


_NOT_FINITE, _BEYOND = 1, 2


@compiled
def _levels(values: npt.NDArray[np.float64], step: float) -> tuple[npt.NDArray[np.int32], int]:
    """rint(values / step) as int32, and what refuses them: _NOT_FINITE (any NaN or Inf) before
    _BEYOND (a level of LEVEL_LIMIT or more), else 0."""
    levels = np.empty(values.size, dtype=np.int32)
    problem = 0
    for i in range(values.size):
        if not np.isfinite(values[i]):
            return levels, _NOT_FINITE
        level = np.rint(values[i] / step)
        if abs(level) >= LEVEL_LIMIT:
            problem = _BEYOND
        else:
            levels[i] = np.int32(level)
    return levels, problem


@dataclass(frozen=True)
class Quantizer:
    """A uniform quantizer whose step is 2^(step_exp / 8), so a step costs a small integer."""

    step_exp: int

    def __post_init__(self) -> None:
        if not isinstance(self.step_exp, int | np.integer) or isinstance(self.step_exp, bool):
            raise InvalidInputError(f"step_exp must be an integer, got {self.step_exp!r}")
        if abs(int(self.step_exp)) > STEP_EXP_LIMIT:
            raise InvalidInputError(f"step_exp {self.step_exp} is out of range ±{STEP_EXP_LIMIT}")

    @property
    def step(self) -> float:
        return float(2.0 ** (self.step_exp / STEPS_PER_OCTAVE))

    @classmethod
    def from_step(cls, step: float) -> Quantizer:
        """The grid step nearest to `step` (in the log domain)."""
        if not math.isfinite(step) or step <= 0:
            raise InvalidInputError(f"quantization step must be positive and finite, got {step}")
        return cls(round(math.log2(step) * STEPS_PER_OCTAVE))

    @classmethod
    def from_bit_depth(cls, amplitudes: npt.ArrayLike, bits: int) -> Quantizer:
        """The finest grid step at which every amplitude fits in `bits` signed bits."""
        if not 2 <= bits <= 31:
            raise InvalidInputError(f"bit depth must be in [2, 31], got {bits}")
        peak = float(np.max(np.abs(np.asarray(amplitudes, dtype=np.float64)), initial=0.0))
        if not math.isfinite(peak):
            raise InvalidInputError("amplitudes must be finite")
        if peak == 0.0:
            return cls(0)
        exp = math.ceil(math.log2(peak / (2 ** (bits - 1) - 1)) * STEPS_PER_OCTAVE)
        exp = max(exp, -STEP_EXP_LIMIT)  # amplitudes below 1e-77 all fit the finest step
        while peak / 2.0 ** (exp / STEPS_PER_OCTAVE) > 2 ** (bits - 1) - 1:  # float rounding
            exp += 1
        return cls(exp)

    def quantize(self, amplitudes: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Round each amplitude to the nearest level (half away from zero is not needed: rint)."""
        values = np.asarray(amplitudes, dtype=np.float64)
        levels, problem = _levels(values.ravel(), self.step)
        if problem == _NOT_FINITE:
            raise InvalidInputError("cannot quantize NaN or Inf amplitudes")
        if problem == _BEYOND:
            raise InvalidInputError(
                f"amplitude {np.max(np.abs(values)):.3g} needs more than 31 bits at step "
                f"{self.step:.3g}; use a coarser step"
            )
        return levels.reshape(values.shape)

    def dequantize(self, levels: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.asarray(levels, dtype=np.float64) * self.step
