"""What a decoder needs besides the codes: the kernels, how they paint, and the residual transform."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from sancodec.entropy import CODER_ERRORS, ClassTable, Decoder, Encoder, unzigzag, zigzag
from sancodec.errors import CorruptCodeError, InvalidConfigError, InvalidInputError
from sancodec.residual import ResidualSpec
from sancodec.tables import CodingTables
from sancodec.v1 import codes_pb2

__all__ = [
    "KERNEL_BITS",
    "Codebook",
    "DecoderMode",
    "kernels_from_proto",
    "kernels_to_proto",
    "on_grid",
    "quantize_kernel",
]

MAX_KERNEL_SIZE = 1 << 16
# a kernel stored as levels: |level| < 2^24, so level * 2^step_exp is exact in float32
MAX_KERNEL_LEVEL = (1 << 24) - 1
# --adapt's kernels: the largest weight is 128 to 256 steps, each a power of two
KERNEL_BITS = 8
# weights a received codebook may hold in all: levels cost a fraction of a bit each, so their
# bytes alone do not bound the work of decoding them
MAX_CODEBOOK_WEIGHTS = 1 << 18
# the most levels one byte of a kernel's code can hold (a level's class costs at least
# 2^-12 of a bit under _LEVEL_CLASSES), with room to spare
LEVELS_PER_BYTE = 1 << 14
# the class table of a kernel's level differences (docs/sanc-format.md): half-bit weights 40 - 2c
_LEVEL_CLASSES = ClassTable(0, tuple(max(1, 40 - 2 * c) for c in range(26)))


class DecoderMode(StrEnum):
    ADJOINT = "adjoint"
    CORRELATION = "correlation"

    def to_proto(self) -> codes_pb2.DecoderMode.ValueType:
        return _MODE_TO_PROTO[self]

    @classmethod
    def from_proto(cls, value: int) -> DecoderMode:
        for mode, number in _MODE_TO_PROTO.items():
            if number == value:
                return mode
        raise CorruptCodeError(f"unknown decoder mode {value}")


_MODE_TO_PROTO = {
    DecoderMode.ADJOINT: codes_pb2.DECODER_MODE_ADJOINT,
    DecoderMode.CORRELATION: codes_pb2.DECODER_MODE_CORRELATION,
}


@dataclass(frozen=True, eq=False)
class Codebook:
    """Kernels (id = index), the decoder mode and the residual transform, if any.

    The encoder computes s[t] = sum_j w[j] x[t + j - c] with c = (m - 1) // 2. In `adjoint` mode a
    spike of amplitude a at t0 paints a * w[j] at t0 - c + j, where the encoder matched w; in
    `correlation` mode (the authors' code) it paints a * w[m - 1 - j] at t0 - (m - 1 - c) + j.
    """

    kernels: tuple[npt.NDArray[np.float32], ...]
    decoder_mode: DecoderMode = DecoderMode.ADJOINT
    residual: ResidualSpec | None = None
    tables: CodingTables = field(default_factory=CodingTables)

    def __post_init__(self) -> None:
        if not self.kernels:
            raise InvalidConfigError("a codebook needs at least one kernel")
        frozen = []
        for i, w in enumerate(self.kernels):
            array = np.array(w, dtype=np.float32, copy=True)
            if array.ndim != 1 or not 0 < array.size <= MAX_KERNEL_SIZE:
                raise InvalidConfigError(
                    f"kernel {i} must be 1-D with 1..{MAX_KERNEL_SIZE} weights"
                )
            if not np.all(np.isfinite(array)):
                raise InvalidConfigError(f"kernel {i} has NaN or Inf weights")
            array = on_grid(array)
            array.setflags(write=False)
            frozen.append(array)
        object.__setattr__(self, "kernels", tuple(frozen))
        object.__setattr__(self, "decoder_mode", DecoderMode(self.decoder_mode))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Codebook):
            return NotImplemented
        return (
            self.decoder_mode == other.decoder_mode
            and self.residual == other.residual
            and self.tables == other.tables
            and len(self.kernels) == len(other.kernels)
            and all(np.array_equal(a, b) for a, b in zip(self.kernels, other.kernels, strict=True))
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def weight_count(self) -> int:
        """W of the paper's CR^-1: the total number of kernel weights."""
        return sum(int(w.size) for w in self.kernels)

    def painted(self, kernel_id: int) -> tuple[npt.NDArray[np.float32], int]:
        """(values, left): a unit spike at t0 paints values[j] at t0 - left + j."""
        if not 0 <= kernel_id < len(self.kernels):
            raise CorruptCodeError(
                f"kernel id {kernel_id} is not in this codebook of {len(self.kernels)} kernels"
            )
        w = self.kernels[kernel_id]
        centre = (w.size - 1) // 2
        if self.decoder_mode is DecoderMode.ADJOINT:
            return w, centre
        return w[::-1], w.size - 1 - centre

    def updated(self, kernels: Sequence[npt.NDArray[np.float32]]) -> Codebook:
        """This codebook with a block's codebook update applied (no update: itself). No new
        kernel may be longer than the longest old one, so spikes never paint further."""
        if not kernels:
            return self
        longest = max(w.size for w in self.kernels)
        sizes = [int(np.size(w)) for w in kernels]
        if max(sizes) > longest:
            raise InvalidInputError(
                f"a codebook update's kernels ({sizes} weights) may be no longer than the "
                f"longest kernel they replace ({longest})"
            )
        return dataclasses.replace(self, kernels=tuple(kernels))

    @property
    def reach(self) -> tuple[int, int]:
        """How far spikes paint to the left and right of their own position, at most."""
        lefts = [self.painted(i)[1] for i in range(len(self.kernels))]
        rights = [w.size - 1 - left for w, left in zip(self.kernels, lefts, strict=True)]
        return max(lefts), max(rights)

    def to_proto(self) -> codes_pb2.Codebook:
        message = codes_pb2.Codebook(
            kernels=kernels_to_proto(self.kernels),
            decoder_mode=self.decoder_mode.to_proto(),
            tables=self.tables.to_proto(),
        )
        if self.residual is not None:
            message.residual.CopyFrom(
                codes_pb2.ResidualSpec(wavelet=self.residual.wavelet, level=self.residual.level)
            )
        return message

    @classmethod
    def from_proto(cls, message: codes_pb2.Codebook) -> Codebook:
        kernels = kernels_from_proto(message.kernels)
        try:
            residual = None
            if message.HasField("residual"):
                residual = ResidualSpec(message.residual.wavelet, message.residual.level)
            return cls(
                kernels=kernels,
                decoder_mode=DecoderMode.from_proto(message.decoder_mode),
                residual=residual,
                tables=CodingTables.from_proto(message.tables),
            )
        except InvalidInputError as exc:
            raise CorruptCodeError(f"invalid codebook: {exc}") from None


def quantize_kernel(weights: npt.ArrayLike, bits: int = KERNEL_BITS) -> npt.NDArray[np.float32]:
    """The weights rounded to a power-of-two step at which the largest is 2^(bits-1) to 2^bits
    steps: their code (`Kernel.levels`) then costs a few bits a weight."""
    w = np.asarray(weights, dtype=np.float64)
    peak = float(np.max(np.abs(w), initial=0.0))
    if peak == 0.0 or not math.isfinite(peak):
        return (w + 0.0).astype(np.float32)
    step_exp = math.ceil(math.log2(peak)) - bits
    return (np.ldexp(np.rint(np.ldexp(w, -step_exp)), step_exp) + 0.0).astype(np.float32)  # no -0


def on_grid(weights: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The kernel as a codebook holds it: levels times a power of two, |level| < 2^24, no -0.
    Most float32 kernels already are; one spanning more than 24 bits loses its tiniest weights'
    lowest bits (below 2^-24 of its peak)."""
    if _grid(weights) is not None:
        return weights
    return quantize_kernel(weights, bits=23)


def _grid(weights: npt.NDArray[np.float32]) -> tuple[int, npt.NDArray[np.int64]] | None:
    """(e, levels) with weights == levels * 2^e exactly, e the largest such exponent; None when
    a level would reach 2^24 or a weight is -0.0."""
    if np.any(np.signbit(weights[weights == 0])):
        return None
    nonzero = weights[weights != 0].astype(np.float64)
    if nonzero.size == 0:
        return 0, np.zeros(weights.size, dtype=np.int64)
    mantissas, exponents = np.frexp(nonzero)  # a float32 has 24 significant bits
    ints = np.abs(np.ldexp(mantissas, 24)).astype(np.int64)
    lowest = np.log2(ints & -ints).astype(np.int64)  # trailing zero bits
    step_exp = int(np.min(exponents - 24 + lowest))
    levels = np.ldexp(weights.astype(np.float64), -step_exp)
    if np.max(np.abs(levels)) > MAX_KERNEL_LEVEL:
        return None
    return step_exp, levels.astype(np.int64)


def kernels_to_proto(kernels: Sequence[npt.NDArray[np.float32]]) -> list[codes_pb2.Kernel]:
    """Kernels as Kernel messages, ids 0..q-1; each must be on a grid (`on_grid`)."""
    return [_kernel_to_proto(i, w) for i, w in enumerate(kernels)]


def kernels_from_proto(
    messages: Sequence[codes_pb2.Kernel],
) -> tuple[npt.NDArray[np.float32], ...]:
    """Kernel messages (a codebook's, or a block's update) back to float32 kernels, bounded
    before any is decoded; CorruptCodeError names what is wrong."""
    ids = [k.id for k in messages]
    total = sum(k.size for k in messages)
    if total > MAX_CODEBOOK_WEIGHTS:
        raise CorruptCodeError(
            f"the kernel set holds {total} weights, more than {MAX_CODEBOOK_WEIGHTS}"
        )
    if ids != list(range(len(ids))):
        raise CorruptCodeError(f"kernel ids must be 0..q-1 in order, got {ids[:8]}")
    out = []
    for k in messages:
        try:
            w = _kernel_from_proto(k)
        except InvalidInputError as exc:
            raise CorruptCodeError(f"invalid kernel: {exc}") from None
        if not np.all(np.isfinite(w)):
            raise CorruptCodeError(f"kernel {k.id} has NaN or Inf weights (beyond float32)")
        out.append(w)
    return tuple(out)


def _kernel_to_proto(i: int, weights: npt.NDArray[np.float32]) -> codes_pb2.Kernel:
    grid = _grid(weights)
    assert grid is not None  # a Codebook holds its kernels on a grid (on_grid)
    step_exp, levels = grid
    enc = Encoder()
    enc.integers(zigzag(np.diff(levels, prepend=0)), _LEVEL_CLASSES)
    return codes_pb2.Kernel(id=i, step_exp=step_exp, size=weights.size, levels=enc.finish())


def _kernel_from_proto(message: codes_pb2.Kernel) -> npt.NDArray[np.float32]:
    name = f"kernel {message.id}"
    if not 0 < message.size <= min(MAX_KERNEL_SIZE, LEVELS_PER_BYTE * max(len(message.levels), 1)):
        raise InvalidInputError(
            f"{name}: {message.size} levels, not 1..{MAX_KERNEL_SIZE} or more than "
            f"{len(message.levels)} bytes can hold"
        )
    dec = Decoder(message.levels)
    try:
        levels = np.cumsum(unzigzag(dec.integers(message.size, _LEVEL_CLASSES)))
        dec.finish()
    except (CorruptCodeError, *CODER_ERRORS) as exc:
        raise InvalidInputError(f"{name}: its levels do not decode ({exc})") from None
    if np.abs(levels).max() > MAX_KERNEL_LEVEL:
        raise InvalidInputError(f"{name}: a level is beyond ±{MAX_KERNEL_LEVEL}")
    with np.errstate(over="ignore"):  # a step too large: Inf, refused by the Codebook
        return np.ldexp(levels.astype(np.float64), message.step_exp).astype(np.float32)
