"""What a decoder needs besides the codes: the kernels, how they paint, and the residual transform."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from sancodec.binary_stream import (
    RangeDecoder,
    RangeEncoder,
    get,
    probabilities,
    put,
    unzigzag,
    zigzag,
)
from sancodec.errors import CorruptCodeError, InvalidConfigError, InvalidInputError
from sancodec.residual import ResidualSpec
from sancodec.v1 import codes_pb2

__all__ = ["KERNEL_BITS", "Codebook", "DecoderMode", "quantize_kernel"]

MAX_KERNEL_SIZE = 1 << 16
# a kernel stored as levels: |level| < 2^24, so level * 2^step_exp is exact in float32
MAX_KERNEL_LEVEL = (1 << 24) - 1
# --adapt's kernels: the largest weight is 128 to 256 steps, each a power of two
KERNEL_BITS = 8
# weights a received codebook may hold in all: levels cost a fraction of a bit each, so their
# bytes alone do not bound the work of decoding them
MAX_CODEBOOK_WEIGHTS = 1 << 18
# the most level values one byte of a range code can hold (every bin costs at least
# -log2(1 - 31/2048) bits), with room to spare
LEVELS_PER_BYTE = 512


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

    @property
    def reach(self) -> tuple[int, int]:
        """How far spikes paint to the left and right of their own position, at most."""
        lefts = [self.painted(i)[1] for i in range(len(self.kernels))]
        rights = [w.size - 1 - left for w, left in zip(self.kernels, lefts, strict=True)]
        return max(lefts), max(rights)

    def to_proto(self) -> codes_pb2.Codebook:
        message = codes_pb2.Codebook(
            kernels=[_kernel_to_proto(i, w) for i, w in enumerate(self.kernels)],
            decoder_mode=self.decoder_mode.to_proto(),
        )
        if self.residual is not None:
            message.residual.CopyFrom(
                codes_pb2.ResidualSpec(wavelet=self.residual.wavelet, level=self.residual.level)
            )
        return message

    @classmethod
    def from_proto(cls, message: codes_pb2.Codebook) -> Codebook:
        ids = [k.id for k in message.kernels]
        total = sum(k.size + len(k.weights) + len(k.weights_f16) // 2 for k in message.kernels)
        if total > MAX_CODEBOOK_WEIGHTS:
            raise CorruptCodeError(
                f"the codebook holds {total} weights, more than {MAX_CODEBOOK_WEIGHTS}"
            )
        if ids != list(range(len(ids))):
            raise CorruptCodeError(f"kernel ids must be 0..q-1 in order, got {ids[:8]}")
        try:
            residual = None
            if message.HasField("residual"):
                residual = ResidualSpec(message.residual.wavelet, message.residual.level)
            return cls(
                kernels=tuple(_kernel_from_proto(k) for k in message.kernels),
                decoder_mode=DecoderMode.from_proto(message.decoder_mode),
                residual=residual,
            )
        except InvalidInputError as exc:
            raise CorruptCodeError(f"invalid codebook: {exc}") from None


def quantize_kernel(weights: npt.ArrayLike, bits: int = KERNEL_BITS) -> npt.NDArray[np.float32]:
    """The weights rounded to a power-of-two step at which the largest is 2^(bits-1) to 2^bits
    steps: the .sanc header then stores them as levels (`Kernel.levels`), a few bits each."""
    w = np.asarray(weights, dtype=np.float64)
    peak = float(np.max(np.abs(w), initial=0.0))
    if peak == 0.0 or not math.isfinite(peak):
        return w.astype(np.float32)
    step_exp = math.ceil(math.log2(peak)) - bits
    return (np.ldexp(np.rint(np.ldexp(w, -step_exp)), step_exp) + 0.0).astype(np.float32)  # no -0


def _grid(weights: npt.NDArray[np.float32]) -> tuple[int, npt.NDArray[np.int64]] | None:
    """(e, levels) with weights == levels * 2^e exactly, e the largest such exponent; None when
    a level would reach 2^24."""
    if np.any(np.signbit(weights[weights == 0])):
        return None  # a level cannot hold -0.0
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


def _levels_to_bytes(levels: npt.NDArray[np.int64]) -> bytes:
    enc, probs, previous = RangeEncoder(), probabilities(1), 0
    for level in levels.tolist():
        put(enc, probs, 0, zigzag(level - previous))
        previous = level
    return enc.finish(lean=True)


def _levels_from_bytes(data: bytes, size: int) -> npt.NDArray[np.int64]:
    dec, probs, level, out = RangeDecoder(data, lean=True), probabilities(1), 0, []
    for _ in range(size):
        level += unzigzag(get(dec, probs, 0))
        if abs(level) > MAX_KERNEL_LEVEL:
            raise CorruptCodeError(f"a level is beyond ±{MAX_KERNEL_LEVEL}")
        out.append(level)
    dec.finish()
    return np.asarray(out, dtype=np.int64)


def _kernel_to_proto(i: int, weights: npt.NDArray[np.float32]) -> codes_pb2.Kernel:
    """The smallest exact form: levels on a power-of-two step (kernels rounded to one, as
    --adapt's, with quantize_kernel), half precision, or float32."""
    options = [codes_pb2.Kernel(id=i, weights=weights.tolist())]
    with np.errstate(over="ignore"):  # beyond 65504: not exact, so not half precision
        half = weights.astype("<f2")
    if np.array_equal(half.astype(np.float32), weights):
        options.append(codes_pb2.Kernel(id=i, weights_f16=half.tobytes()))
    grid = _grid(weights)  # exact to the bit: no -0.0, |level| < 2^24
    if grid is not None:
        step_exp, levels = grid
        options.append(codes_pb2.Kernel(id=i, levels_step_exp=step_exp, size=weights.size,
                                        levels=_levels_to_bytes(levels)))  # fmt: skip
    return min(options, key=lambda k: k.ByteSize())


def _kernel_from_levels(message: codes_pb2.Kernel) -> npt.NDArray[np.float32]:
    name = f"kernel {message.id}"
    if not 0 < message.size <= min(MAX_KERNEL_SIZE, LEVELS_PER_BYTE * len(message.levels)):
        raise InvalidInputError(
            f"{name}: {message.size} levels, not 1..{MAX_KERNEL_SIZE} or more than "
            f"{len(message.levels)} bytes can hold"
        )
    try:
        levels = _levels_from_bytes(message.levels, message.size)
    except CorruptCodeError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None
    with np.errstate(over="ignore"):  # a step too large: Inf, refused as such
        weights = np.ldexp(levels.astype(np.float64), message.levels_step_exp)
        exact = weights.astype(np.float32)
    if np.all(np.isfinite(exact)) and not np.array_equal(exact.astype(np.float64), weights):
        raise InvalidInputError(
            f"{name}: levels at step 2^{message.levels_step_exp} are not exact in float32"
        )
    return exact


def _kernel_from_proto(message: codes_pb2.Kernel) -> npt.NDArray[np.float32]:
    forms = sum(map(bool, (message.weights, message.weights_f16, message.levels)))
    if forms > 1:
        raise InvalidInputError(f"kernel {message.id}: weights in more than one form")
    if message.levels:
        return _kernel_from_levels(message)
    if message.size or message.levels_step_exp:
        raise InvalidInputError(f"kernel {message.id}: a level count or step without levels")
    if not message.weights_f16:
        return np.asarray(message.weights, dtype=np.float32)
    if len(message.weights_f16) % 2:
        raise InvalidInputError(
            f"kernel {message.id}: half-precision weights need an even byte count"
        )
    return np.frombuffer(message.weights_f16, dtype="<f2").astype(np.float32)
