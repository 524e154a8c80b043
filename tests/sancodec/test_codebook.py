"""Codebooks and headers in the .sanc file: kernels as levels on a power-of-two grid, tables,
the format version."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sancodec import ChannelInfo, Codebook, CorruptCodeError, ModelRef, StreamHeader
from sancodec.codebook import _LEVEL_CLASSES, quantize_kernel
from sancodec.entropy import Encoder, zigzag
from sancodec.v1 import codes_pb2


def _levels(levels: list[int]) -> bytes:
    enc = Encoder()
    enc.integers(zigzag(np.diff(np.asarray(levels, dtype=np.int64), prepend=0)), _LEVEL_CLASSES)
    return enc.finish()


@pytest.mark.parametrize(
    ("kernel", "match"),
    [
        (codes_pb2.Kernel(id=0, size=0, levels=b"\x00"), "0 levels, not 1..65536"),
        (codes_pb2.Kernel(id=0, size=70000, levels=b"\x00"), "70000 levels"),
        (codes_pb2.Kernel(id=0, size=1, levels=_levels([1 << 24])), "beyond"),
        (codes_pb2.Kernel(id=0, step_exp=200, size=2, levels=_levels([1, 2])), "NaN or Inf"),
        (codes_pb2.Kernel(id=0, size=3, levels=_levels([5, 6, 7]) + b"\x00"),
         "ends with a zero byte"),
    ],
)  # fmt: skip
def test_malformed_kernels_are_refused(kernel: codes_pb2.Kernel, match: str) -> None:
    with pytest.raises(CorruptCodeError, match=match):
        Codebook.from_proto(
            codes_pb2.Codebook(kernels=[kernel], decoder_mode=codes_pb2.DECODER_MODE_ADJOINT)
        )


@pytest.mark.parametrize("version", [1, 2, 3, 4, 6, 0])
def test_headers_say_version_5_and_other_versions_are_refused_by_name(version: int) -> None:
    channels = (ChannelInfo("MLII", "mV", 0.0, 1.0, 200.0, 1024, 11),)
    header = StreamHeader(ModelRef("test", "1"), Codebook((np.ones(4, np.float32),)), 360.0, 2048,
                          channels)  # fmt: skip
    message = header.to_proto()
    assert message.format_version == 5
    assert StreamHeader.from_proto(message) == header
    message.format_version = version
    with pytest.raises(CorruptCodeError, match=f"format version {version} is not supported"):
        StreamHeader.from_proto(message)


def test_quantized_kernels_cost_a_few_bits_a_weight(mitdb100: np.ndarray) -> None:
    """--adapt rounds its kernels to a power-of-two step (quantize_kernel): a beat-shaped kernel
    (a real beat of record 100) then costs under a third of its half-precision bytes."""
    beat = np.asarray(mitdb100[:256], dtype=np.float64)
    beat -= beat.mean()
    kernel = quantize_kernel(beat / np.linalg.norm(beat))
    message = Codebook((kernel,)).to_proto()
    assert message.kernels[0].ByteSize() < 512 / 3
    back = Codebook.from_proto(codes_pb2.Codebook.FromString(message.SerializeToString()))
    assert np.array_equal(back.kernels[0], kernel)
    step = 2.0 ** message.kernels[0].step_exp
    levels = kernel / step
    assert np.array_equal(levels, np.rint(levels))
    assert 128 < np.max(np.abs(levels)) <= 256
    assert np.max(np.abs(kernel - beat / np.linalg.norm(beat))) <= step / 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(1 << 23), 1 << 23), min_size=1, max_size=300),
    st.integers(-120, 90),
)
def test_any_kernel_on_a_power_of_two_grid_round_trips_exactly(levels: list[int], exp: int) -> None:
    kernel = np.ldexp(np.asarray(levels, dtype=np.float64), exp).astype(np.float32)
    back = Codebook.from_proto(Codebook((kernel,)).to_proto())
    assert np.array_equal(back.kernels[0], kernel)


def test_any_float32_kernel_is_held_on_a_grid_within_2_to_the_minus_24_of_its_peak() -> None:
    kernel = np.array([1.0, 1e-30, -3.5, 0.1], dtype=np.float32)  # spans far more than 24 bits
    held = Codebook((kernel,)).kernels[0]
    assert np.max(np.abs(held - kernel)) <= 4 * 2.0**-24
    assert np.array_equal(Codebook.from_proto(Codebook((held,)).to_proto()).kernels[0], held)


def test_negative_zeros_become_zeros() -> None:
    held = Codebook((np.array([1.0, -0.0, 2.0], dtype=np.float32),)).kernels[0]
    assert not np.any(np.signbit(held[held == 0]))
    rounded = quantize_kernel(np.array([1.0, -1e-9, 0.5]))
    assert not np.any(np.signbit(rounded[rounded == 0]))


def test_a_codebook_of_too_many_weights_is_refused_before_decoding() -> None:
    """Levels cost a fraction of a bit each: a few hundred bytes could ask for millions of weights."""
    zeros = codes_pb2.Kernel(size=65536, levels=_levels([0] * 65536))
    message = codes_pb2.Codebook(decoder_mode=codes_pb2.DECODER_MODE_ADJOINT)
    for i in range(5):
        message.kernels.add().CopyFrom(zeros)
        message.kernels[i].id = i
    assert message.ByteSize() < 2000
    with pytest.raises(CorruptCodeError, match="holds 327680 weights, more than 262144"):
        Codebook.from_proto(message)
