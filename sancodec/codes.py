"""Sparse codes of one block: SAN and residual layers as values (sancodec.payload codes them)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from sancodec.compiled import compiled
from sancodec.errors import InvalidInputError
from sancodec.quantization import LEVEL_LIMIT, Quantizer

__all__ = ["BlockCode", "ChannelCode", "ResidualLayer", "SanLayer"]

MAX_CHANNELS = 4096
MAX_SAMPLE = 1 << 62  # positions are int64 everywhere


def _frozen_array(values: npt.ArrayLike, dtype: type[np.generic], name: str) -> npt.NDArray[Any]:
    array = np.array(values, dtype=dtype, copy=True)
    if array.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional, got shape {array.shape}")
    array.setflags(write=False)
    return array


class _ArrayValue:
    """Equality over dataclass fields that may hold NumPy arrays."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in fields(self):  # type: ignore[arg-type]
            if not f.compare:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if not np.array_equal(a, b):
                    return False
            elif isinstance(a, tuple) and any(isinstance(v, np.ndarray) for v in (*a, *b)):
                if len(a) != len(b) or not all(map(np.array_equal, a, b)):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


_NEGATIVE, _BEYOND, _ZERO, _TWICE, _UNSORTED, _DESCENDING = 1, 2, 3, 4, 5, 6


@compiled
def _level_problem(levels: npt.NDArray[np.int32]) -> int:
    """_BEYOND where a level is ±LEVEL_LIMIT or more, else _ZERO where one is 0, else 0."""
    zero = False
    for v in levels:
        if abs(np.int64(v)) >= LEVEL_LIMIT:
            return _BEYOND
        zero = zero or v == 0
    return _ZERO if zero else 0


@compiled
def _spike_problem(kernel_ids: npt.NDArray[np.int32], positions: npt.NDArray[np.int64],
                   levels: npt.NDArray[np.int32]) -> int:  # fmt: skip
    """What is wrong with these spikes (0: nothing, and they are sorted by kernel and position;
    _UNSORTED: nothing found, but they are not sorted, so a repeat is not looked for)."""
    problem = _level_problem(levels)
    for i in range(kernel_ids.size):
        if kernel_ids[i] < 0 or positions[i] < 0:
            return _NEGATIVE
        if problem == 0 and i > 0:
            if kernel_ids[i] == kernel_ids[i - 1] and positions[i] == positions[i - 1]:
                problem = _TWICE
            elif kernel_ids[i] < kernel_ids[i - 1] or (
                kernel_ids[i] == kernel_ids[i - 1] and positions[i] < positions[i - 1]
            ):
                problem = _UNSORTED
    return problem


@compiled
def _residual_problem(indices: npt.NDArray[np.int64], levels: npt.NDArray[np.int32]) -> int:
    for i in range(indices.size):
        if indices[i] < 0 or (i > 0 and indices[i] <= indices[i - 1]):
            return _DESCENDING
    return _level_problem(levels)


@compiled
def _nonzero(
    dense: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], bool]:
    """The indices and levels of the non-zero values, and whether one is beyond ±LEVEL_LIMIT."""
    count = 0
    for v in dense:
        count += int(v != 0)
    indices = np.empty(count, dtype=np.int64)
    levels = np.empty(count, dtype=np.int32)
    at = 0
    for i in range(dense.size):
        if dense[i] != 0:
            if dense[i] <= -LEVEL_LIMIT or dense[i] >= LEVEL_LIMIT:
                return indices, levels, True
            indices[at], levels[at] = i, dense[i]
            at += 1
    return indices, levels, False


def _raise(problem: int, layer: str) -> None:
    if problem == _NEGATIVE:
        raise InvalidInputError("kernel ids and positions must be non-negative")
    if problem == _BEYOND:
        raise InvalidInputError(f"{layer} has a level beyond ±{LEVEL_LIMIT}")
    if problem == _ZERO:
        raise InvalidInputError(f"{layer} has a zero level: a zero codes nothing, leave it out")
    if problem == _TWICE:
        raise InvalidInputError("a kernel spikes twice at the same position")
    if problem == _DESCENDING:
        raise InvalidInputError("residual indices must be non-negative and strictly ascending")
    assert problem == 0, problem


@dataclass(frozen=True, eq=False)
class SanLayer(_ArrayValue):
    """Spikes of the SAN kernels in one block: kernel id, absolute position, quantized level.

    Spikes are kept sorted by (kernel id, position); a (kernel, position) pair occurs once.
    """

    step_exp: int
    kernel_ids: npt.NDArray[np.int32]
    positions: npt.NDArray[np.int64]
    levels: npt.NDArray[np.int32]
    offset_level: int = 0

    def __post_init__(self) -> None:
        Quantizer(self.step_exp)
        kernel_ids = _frozen_array(self.kernel_ids, np.int32, "kernel_ids")
        positions = _frozen_array(self.positions, np.int64, "positions")
        levels = _frozen_array(self.levels, np.int32, "levels")
        if not kernel_ids.size == positions.size == levels.size:
            raise InvalidInputError("kernel_ids, positions and levels differ in length")
        problem = _spike_problem(kernel_ids, positions, levels)
        if problem in (_NEGATIVE, _BEYOND, _ZERO):
            _raise(problem, "SAN layer")
        if abs(self.offset_level) >= LEVEL_LIMIT:
            raise InvalidInputError(f"offset_level {self.offset_level} is out of range")
        if problem == _UNSORTED:
            order = np.lexsort((positions, kernel_ids))
            kernel_ids, positions, levels = kernel_ids[order], positions[order], levels[order]
            problem = _spike_problem(kernel_ids, positions, levels)
        _raise(problem, "SAN layer")
        for name, value in (
            ("kernel_ids", kernel_ids),
            ("positions", positions),
            ("levels", levels),
        ):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @classmethod
    def from_spikes(
        cls,
        kernel_ids: npt.ArrayLike,
        positions: npt.ArrayLike,
        amplitudes: npt.ArrayLike,
        quantizer: Quantizer,
        offset: float = 0.0,
    ) -> SanLayer:
        """Quantize float spikes; zero levels are dropped, since they cost bytes and paint
        nothing."""
        levels = quantizer.quantize(amplitudes)
        keep = levels != 0
        return cls(
            step_exp=quantizer.step_exp,
            kernel_ids=np.asarray(kernel_ids, dtype=np.int32)[keep],
            positions=np.asarray(positions, dtype=np.int64)[keep],
            levels=levels[keep],
            offset_level=int(quantizer.quantize([offset])[0]),
        )

    @property
    def spike_count(self) -> int:
        return int(self.levels.size)

    @property
    def offset(self) -> float:
        return self.offset_level * Quantizer(self.step_exp).step

    def amplitudes(self) -> npt.NDArray[np.float64]:
        return Quantizer(self.step_exp).dequantize(self.levels)

    def without_spikes(self) -> SanLayer:
        """The same block offset with no spikes: the block's SAN layer left out."""
        empty = np.zeros(0, dtype=np.int64)
        return SanLayer(
            self.step_exp, empty.astype(np.int32), empty, empty.astype(np.int32), self.offset_level
        )


@dataclass(frozen=True, eq=False)
class ResidualLayer(_ArrayValue):
    """Quantized non-zero coefficients of the residual transform, by ascending index."""

    step_exp: int
    indices: npt.NDArray[np.int64]
    levels: npt.NDArray[np.int32]

    def __post_init__(self) -> None:
        Quantizer(self.step_exp)
        indices = _frozen_array(self.indices, np.int64, "indices")
        levels = _frozen_array(self.levels, np.int32, "levels")
        if indices.size != levels.size:
            raise InvalidInputError("residual indices and levels differ in length")
        _raise(_residual_problem(indices, levels), "residual layer")
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "levels", levels)

    @classmethod
    def from_levels(cls, step_exp: int, dense: npt.ArrayLike) -> ResidualLayer:
        """The layer of a block's dense quantized coefficients (its non-zero ones kept)."""
        levels = np.asarray(dense)
        if levels.ndim != 1 or levels.dtype.kind not in "iu":
            raise InvalidInputError(
                f"dense levels must be 1-D integers, got {levels.ndim}-D {levels.dtype}"
            )
        unsigned_beyond = levels.dtype.kind == "u" and levels.size and levels.max() >= LEVEL_LIMIT
        indices, kept, beyond = _nonzero(levels.astype(np.int64, copy=False))
        if beyond or unsigned_beyond:
            raise InvalidInputError(f"residual layer has a level beyond ±{LEVEL_LIMIT}")
        return cls(step_exp, indices, kept)

    def coefficients(self) -> npt.NDArray[np.float64]:
        return Quantizer(self.step_exp).dequantize(self.levels)


@dataclass(frozen=True, eq=False)
class ChannelCode(_ArrayValue):
    channel: int
    san: SanLayer
    residual: ResidualLayer | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.channel < MAX_CHANNELS:
            raise InvalidInputError(f"channel {self.channel} is out of range [0, {MAX_CHANNELS})")


@dataclass(frozen=True, eq=False)
class BlockCode(_ArrayValue):
    """The code of samples [start_sample, start_sample + sample_count) of every channel."""

    start_sample: int
    sample_count: int
    channels: tuple[ChannelCode, ...]
    # what it was stored as, when it was read or written: the serialized EncodedBlock's bytes and
    # each channel's payload bytes (0 and () before it is coded); not part of its value
    stored_bytes: int = field(default=0, compare=False)
    channel_bytes: tuple[int, ...] = field(default=(), compare=False)
    # a codebook update: the stream's kernels from this block on (Codebook.updated); () for none
    kernels: tuple[npt.NDArray[np.float32], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.start_sample < MAX_SAMPLE or not 0 < self.sample_count < 2**32:
            raise InvalidInputError(
                f"bad block range: start {self.start_sample}, {self.sample_count} samples"
            )
        channels = tuple(sorted(self.channels, key=lambda c: c.channel))
        numbers = [c.channel for c in channels]
        if len(set(numbers)) != len(numbers):
            raise InvalidInputError(f"a channel occurs twice in one block: {numbers}")
        end = self.start_sample + self.sample_count
        for c in channels:
            p = c.san.positions
            if p.size and (p[0] < self.start_sample or p.max() >= end):
                raise InvalidInputError(
                    f"channel {c.channel} has a spike outside its block [{self.start_sample}, {end})"
                )
        object.__setattr__(self, "channels", channels)
        kernels = tuple(_frozen_array(w, np.float32, "an updated kernel") for w in self.kernels)
        object.__setattr__(self, "kernels", kernels)

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.sample_count

    @property
    def spike_count(self) -> int:
        return sum(c.san.spike_count for c in self.channels)
