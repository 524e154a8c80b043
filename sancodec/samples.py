"""Raw samples on the wire: little-endian float32 or int16, interleaved by frame."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

from sancodec.errors import CorruptCodeError, InvalidSignalError
from sancodec.v1 import codes_pb2

__all__ = ["SampleDtype", "pack_samples", "unpack_samples"]


class SampleDtype(StrEnum):
    FLOAT32 = "float32"
    INT16 = "int16"

    @property
    def numpy(self) -> np.dtype[np.generic]:
        return np.dtype("<f4") if self is SampleDtype.FLOAT32 else np.dtype("<i2")

    @property
    def bits(self) -> int:
        return self.numpy.itemsize * 8

    def to_proto(self) -> codes_pb2.SampleDtype.ValueType:
        if self is SampleDtype.FLOAT32:
            return codes_pb2.SAMPLE_DTYPE_FLOAT32
        return codes_pb2.SAMPLE_DTYPE_INT16

    @classmethod
    def from_proto(cls, value: int) -> SampleDtype:
        if value == codes_pb2.SAMPLE_DTYPE_FLOAT32:
            return cls.FLOAT32
        if value == codes_pb2.SAMPLE_DTYPE_INT16:
            return cls.INT16
        raise CorruptCodeError(f"unknown sample dtype {value} (expected float32 or int16)")


def unpack_samples(data: bytes, dtype: SampleDtype, channel_count: int) -> npt.NDArray[np.float64]:
    """Bytes of whole frames to a (channels, n) array; refuses partial frames, NaN and Inf."""
    frame_bytes = dtype.numpy.itemsize * channel_count
    if channel_count <= 0:
        raise InvalidSignalError(f"channel count must be positive, got {channel_count}")
    if len(data) == 0:
        raise InvalidSignalError("empty chunk: a chunk must hold at least one frame")
    if len(data) % frame_bytes:
        raise InvalidSignalError(
            f"chunk of {len(data)} bytes is not a whole number of frames "
            f"({channel_count} channels x {dtype.numpy.itemsize} bytes of {dtype.value})"
        )
    values = np.frombuffer(data, dtype=dtype.numpy).reshape(-1, channel_count).T
    samples = values.astype(np.float64)
    if dtype is SampleDtype.FLOAT32 and not np.all(np.isfinite(samples)):
        bad = np.argwhere(~np.isfinite(samples))[0]
        raise InvalidSignalError(
            f"chunk has a NaN or Inf sample (channel {bad[0]}, frame {bad[1]})"
        )
    return samples


def pack_samples(samples: npt.ArrayLike, dtype: SampleDtype) -> bytes:
    """A (channels, n) array to interleaved little-endian bytes of `dtype`."""
    array = np.asarray(samples)
    if array.ndim != 2:
        raise InvalidSignalError(f"samples must be (channels, n), got shape {array.shape}")
    if dtype is SampleDtype.INT16:
        if not np.issubdtype(array.dtype, np.integer):
            raise InvalidSignalError("int16 samples must be integers")
        if array.size and (array.min() < -(2**15) or array.max() >= 2**15):
            raise InvalidSignalError("a sample does not fit in int16")
    out = array.T.astype(dtype.numpy)
    if dtype is SampleDtype.FLOAT32 and not np.all(np.isfinite(out)):
        raise InvalidSignalError("samples contain NaN or Inf, or values beyond float32")
    return out.tobytes()
