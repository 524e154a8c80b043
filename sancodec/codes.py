"""Sparse codes of one block: SAN and residual layers, and their proto form (sancodec.v1)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from sancodec.binary_stream import decode_binary, encode_binary
from sancodec.errors import CorruptCodeError, InvalidInputError
from sancodec.packed import MAX_VALUES, PackedCode, decode_packed, encode_packed
from sancodec.quantization import LEVEL_LIMIT, Quantizer
from sancodec.sparse_stream import decode_sparse, dyadic_bands, encode_sparse
from sancodec.v1 import codes_pb2

__all__ = ["BlockCode", "ChannelCode", "EntropyCoder", "ResidualLayer", "SanLayer", "parse_block"]

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
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


def _check_levels(levels: npt.NDArray[np.int32], name: str) -> None:
    if levels.size and int(np.max(np.abs(levels.astype(np.int64)))) >= LEVEL_LIMIT:
        raise InvalidInputError(f"{name} has a level beyond ±{LEVEL_LIMIT}")
    if np.any(levels == 0):
        raise InvalidInputError(f"{name} has a zero level: a zero codes nothing, leave it out")


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
    scale_exp: int = 0

    def __post_init__(self) -> None:
        Quantizer(self.step_exp)
        Quantizer(self.scale_exp)
        kernel_ids = _frozen_array(self.kernel_ids, np.int32, "kernel_ids")
        positions = _frozen_array(self.positions, np.int64, "positions")
        levels = _frozen_array(self.levels, np.int32, "levels")
        if not kernel_ids.size == positions.size == levels.size:
            raise InvalidInputError("kernel_ids, positions and levels differ in length")
        if kernel_ids.size and (kernel_ids.min() < 0 or positions.min() < 0):
            raise InvalidInputError("kernel ids and positions must be non-negative")
        _check_levels(levels, "SAN layer")
        if abs(self.offset_level) >= LEVEL_LIMIT:
            raise InvalidInputError(f"offset_level {self.offset_level} is out of range")
        order = np.lexsort((positions, kernel_ids))
        kernel_ids, positions, levels = kernel_ids[order], positions[order], levels[order]
        same = (np.diff(kernel_ids) == 0) & (np.diff(positions) == 0)
        if np.any(same):
            raise InvalidInputError("a kernel spikes twice at the same position")
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
        scale_exp: int = 0,
    ) -> SanLayer:
        """Quantize float spikes (amplitudes already divided by the block scale); zero levels
        are dropped, since they cost bytes and paint nothing."""
        levels = quantizer.quantize(amplitudes)
        keep = levels != 0
        return cls(
            step_exp=quantizer.step_exp,
            kernel_ids=np.asarray(kernel_ids, dtype=np.int32)[keep],
            positions=np.asarray(positions, dtype=np.int64)[keep],
            levels=levels[keep],
            offset_level=int(quantizer.quantize([offset])[0]),
            scale_exp=scale_exp,
        )

    @property
    def spike_count(self) -> int:
        return int(self.levels.size)

    @property
    def offset(self) -> float:
        return self.offset_level * Quantizer(self.step_exp).step

    def amplitudes(self) -> npt.NDArray[np.float64]:
        """Dequantized amplitudes, block scale applied."""
        scale = Quantizer(self.scale_exp).step
        return Quantizer(self.step_exp).dequantize(self.levels) * scale


class EntropyCoder(IntEnum):
    """How a residual layer's (index, level) list is written (codes.proto EntropyCoder)."""

    RICE = 0  # adaptive Golomb-Rice, sancodec.sparse_stream: fast, the default
    ADAPTIVE_BINARY = 1  # Exp-Golomb bins, adaptive range coder, sancodec.binary_stream: smaller
    PACKED = 2  # the whole channel code, side information too, in one range code: sancodec.packed


# each layer coder's (encode, decode) of a (position, level) list; PACKED codes whole channels
CODERS = {
    EntropyCoder.RICE: (encode_sparse, decode_sparse),
    EntropyCoder.ADAPTIVE_BINARY: (encode_binary, decode_binary),
}


@dataclass(frozen=True, eq=False)
class ResidualLayer(_ArrayValue):
    """Quantized non-zero coefficients of the residual transform, by ascending index."""

    step_exp: int
    indices: npt.NDArray[np.int64]
    levels: npt.NDArray[np.int32]
    coder: EntropyCoder = EntropyCoder.RICE  # how its proto form is written

    def __post_init__(self) -> None:
        Quantizer(self.step_exp)
        indices = _frozen_array(self.indices, np.int64, "indices")
        levels = _frozen_array(self.levels, np.int32, "levels")
        if indices.size != levels.size:
            raise InvalidInputError("residual indices and levels differ in length")
        if indices.size and (indices.min() < 0 or np.any(np.diff(indices) <= 0)):
            raise InvalidInputError("residual indices must be non-negative and strictly ascending")
        _check_levels(levels, "residual layer")
        try:
            coder = EntropyCoder(self.coder)
        except ValueError:
            raise InvalidInputError(f"unknown entropy coder {self.coder!r}") from None
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "coder", coder)

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

    def to_proto(self, block_start: int, block_length: int) -> codes_pb2.ChannelCode:
        """The proto form within a block of `block_length` samples from `block_start`."""
        return _channel_to_proto(self, block_start, block_length)


@dataclass(frozen=True, eq=False)
class BlockCode(_ArrayValue):
    """The code of samples [start_sample, start_sample + sample_count) of every channel."""

    start_sample: int
    sample_count: int
    channels: tuple[ChannelCode, ...]

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

    @property
    def end_sample(self) -> int:
        return self.start_sample + self.sample_count

    def to_proto(self) -> codes_pb2.EncodedBlock:
        return codes_pb2.EncodedBlock(
            start_sample=self.start_sample,
            sample_count=self.sample_count,
            channels=[
                _channel_to_proto(c, self.start_sample, self.sample_count) for c in self.channels
            ],
        )

    def to_bytes(self) -> bytes:
        """The serialized EncodedBlock: exactly the bytes the rate metrics count."""
        return self.to_proto().SerializeToString(deterministic=True)

    @classmethod
    def from_proto(cls, message: codes_pb2.EncodedBlock) -> BlockCode:
        """Validate a received block; any inconsistency raises CorruptCodeError."""
        start, count = message.start_sample, message.sample_count
        try:
            if start >= MAX_SAMPLE:
                raise InvalidInputError(f"start sample {start} is beyond any stream")
            channels = tuple(_channel_from_proto(c, start, count) for c in message.channels)
            return cls(start_sample=start, sample_count=count, channels=channels)
        except InvalidInputError as exc:
            raise CorruptCodeError(f"invalid encoded block: {exc}") from None


def parse_block(data: bytes) -> BlockCode:
    """Parse and validate a serialized EncodedBlock."""
    message = codes_pb2.EncodedBlock()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CorruptCodeError(f"encoded block does not parse: {exc}") from None
    return BlockCode.from_proto(message)


def _channel_to_proto(code: ChannelCode, start: int, count: int) -> codes_pb2.ChannelCode:
    san, r = code.san, code.residual
    if r is not None and r.coder == EntropyCoder.PACKED:
        values = PackedCode(san.step_exp, san.scale_exp, san.offset_level, san.kernel_ids,
                            san.positions, san.levels, (r.step_exp, r.indices, r.levels))  # fmt: skip
        try:
            packed = encode_packed(values, start, count, layout=2)
        except CorruptCodeError as exc:
            raise InvalidInputError(f"channel {code.channel}: {exc}") from None
        return codes_pb2.ChannelCode(channel=code.channel, packed2=packed)
    kernels = []
    for kid in np.unique(san.kernel_ids):
        mine = san.kernel_ids == kid
        bits = encode_sparse(san.positions[mine], san.levels[mine], start, [count])
        kernels.append(codes_pb2.KernelSpikes(kernel_id=int(kid), count=int(mine.sum()), bits=bits))
    layer = codes_pb2.SanLayer(
        step_exp=san.step_exp,
        offset_level=san.offset_level,
        scale_exp=san.scale_exp,
        kernels=kernels,
    )
    message = codes_pb2.ChannelCode(channel=code.channel, san=layer)
    if r is not None:
        write, _ = CODERS[r.coder]
        bits = write(r.indices, r.levels, 0, dyadic_bands(count))
        message.residual.CopyFrom(
            codes_pb2.ResidualLayer(
                step_exp=r.step_exp,
                count=r.indices.size,
                bits=bits,
                coder=codes_pb2.EntropyCoder.ValueType(r.coder),
            )
        )
    return message


def _decode(
    message: Any, origin: int, bands: list[int], name: str, coder: EntropyCoder = EntropyCoder.RICE
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if message.count > MAX_VALUES:
        raise InvalidInputError(f"{name}: {message.count} values is more than a layer may hold")
    _, read = CODERS[coder]
    try:
        return read(message.bits, message.count, origin, bands)
    except CorruptCodeError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None


def _packed_from_proto(message: codes_pb2.ChannelCode, start: int, count: int) -> ChannelCode:
    if message.HasField("san") or message.HasField("residual"):
        raise InvalidInputError("a packed channel code carries no separate layers")
    if message.packed and message.packed2:
        raise InvalidInputError("a channel code is packed in one layout, not two")
    try:
        if message.packed2:
            v = decode_packed(message.packed2, start, count, layout=2)
        else:
            v = decode_packed(message.packed, start, count, layout=1)
    except CorruptCodeError as exc:
        raise InvalidInputError(f"packed channel code: {exc}") from None
    if v.kernel_ids.size and v.kernel_ids.max() >= 2**31:
        raise InvalidInputError("kernel id out of range")
    san = SanLayer(v.san_step_exp, v.kernel_ids.astype(np.int32), v.positions.astype(np.int64),
                   _narrow(v.levels), v.offset_level, v.scale_exp)  # fmt: skip
    if v.residual is None:
        raise InvalidInputError("a packed channel code needs its residual layer")
    step, indices, coefficient_levels = v.residual
    residual = ResidualLayer(
        step, indices.astype(np.int64), _narrow(coefficient_levels), EntropyCoder.PACKED
    )
    return ChannelCode(channel=message.channel, san=san, residual=residual)


def _channel_from_proto(message: codes_pb2.ChannelCode, start: int, count: int) -> ChannelCode:
    if message.packed or message.packed2:
        return _packed_from_proto(message, start, count)
    if not message.HasField("san"):  # every writer sets one; a newer one may use a new field
        raise InvalidInputError(
            f"channel {message.channel} holds no code this reader knows (upgrade sancodec)"
        )
    ids, positions, levels = [], [], []
    seen: set[int] = set()
    for spikes in message.san.kernels:
        if spikes.kernel_id in seen:
            raise InvalidInputError(f"kernel {spikes.kernel_id} is listed twice")
        seen.add(spikes.kernel_id)
        kernel_positions, kernel_levels = _decode(
            spikes, start, [count], f"kernel {spikes.kernel_id}"
        )
        positions.append(kernel_positions)
        ids.append(np.full(kernel_positions.size, spikes.kernel_id, dtype=np.int64))
        levels.append(kernel_levels)
    empty = np.zeros(0, dtype=np.int64)
    kernel_ids = np.concatenate([empty, *ids])
    if kernel_ids.size and kernel_ids.max() >= 2**31:
        raise InvalidInputError("kernel id out of range")
    san = SanLayer(
        step_exp=message.san.step_exp,
        kernel_ids=kernel_ids.astype(np.int32),
        positions=np.concatenate([empty, *positions]),
        levels=_narrow(np.concatenate([empty, *levels])),
        offset_level=message.san.offset_level,
        scale_exp=message.san.scale_exp,
    )
    residual = None
    if message.HasField("residual"):
        r = message.residual
        try:
            coder = EntropyCoder(r.coder)
        except ValueError:
            raise InvalidInputError(f"residual layer: unknown entropy coder {r.coder}") from None
        if coder == EntropyCoder.PACKED:
            raise InvalidInputError("a residual layer says PACKED but the channel is not packed")
        indices, coefficient_levels = _decode(r, 0, dyadic_bands(count), "residual layer", coder)
        residual = ResidualLayer(
            step_exp=r.step_exp, indices=indices, levels=_narrow(coefficient_levels), coder=coder
        )
    return ChannelCode(channel=message.channel, san=san, residual=residual)


def _narrow(levels: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int32]:
    if levels.size and int(np.max(np.abs(levels))) >= LEVEL_LIMIT:
        raise InvalidInputError(f"a level is beyond ±{LEVEL_LIMIT}")
    return levels.astype(np.int32)
