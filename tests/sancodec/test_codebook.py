"""Codebooks and headers in the .sanc file: float32, half-precision or quantized kernels, format
versions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sancodec import ChannelInfo, Codebook, CorruptCodeError, ModelRef, StreamHeader
from sancodec.codebook import _levels_to_bytes, quantize_kernel
from sancodec.v1 import codes_pb2


def test_half_precision_kernels_travel_in_half_the_bytes() -> None:
    rng = np.random.default_rng(0)
    half = rng.normal(0, 0.1, 256).astype(np.float16).astype(np.float32)
    full = rng.normal(0, 0.1, 256).astype(np.float32)
    full[0] = np.float32(0.1)  # not a binary16 value
    message = Codebook((half, full)).to_proto()
    assert len(message.kernels[0].weights_f16) == 512
    assert not message.kernels[0].weights
    assert len(message.kernels[1].weights) == 256
    assert not message.kernels[1].weights_f16
    back = Codebook.from_proto(codes_pb2.Codebook.FromString(message.SerializeToString()))
    assert np.array_equal(back.kernels[0], half)
    assert np.array_equal(back.kernels[1], full)
    assert back.kernels[0].dtype == np.float32


@pytest.mark.parametrize(
    ("kernel", "match"),
    [
        (codes_pb2.Kernel(id=0, weights_f16=b"\x00\x3c\x00"), "even byte count"),
        (codes_pb2.Kernel(id=0, weights=[1.0], weights_f16=b"\x00\x3c"), "more than one form"),
        (codes_pb2.Kernel(id=0, weights_f16=b"\x00\x7c"), "NaN or Inf"),
        (codes_pb2.Kernel(id=0, size=3, levels=b"\x00", weights=[1.0]), "more than one form"),
        (codes_pb2.Kernel(id=0, size=0, levels=b"\x00"), "0 levels, not 1..65536"),
        (codes_pb2.Kernel(id=0, size=70000, levels=b"\x00"), "70000 levels"),
        (codes_pb2.Kernel(id=0, size=3, weights=[1.0]), "a level count or step without levels"),
        (codes_pb2.Kernel(id=0, size=3, levels=b""), "a level count or step without levels"),
        (codes_pb2.Kernel(id=0, size=4000, levels=b"\x00"), "more than 1 bytes can hold"),
        (
            codes_pb2.Kernel(id=0, size=50, levels=_levels_to_bytes(np.arange(50) * 999)[:3]),
            "kernel 0: the code ends before its last value",
        ),
        (
            codes_pb2.Kernel(
                id=0, levels_step_exp=-160, size=1, levels=_levels_to_bytes(np.array([3]))
            ),
            "not exact in float32",
        ),
        (codes_pb2.Kernel(id=0, size=1, levels=b"\x00\x00\x00\x00\x00"), "data after"),
        (codes_pb2.Kernel(id=0, size=1, levels=_levels_to_bytes(np.array([1 << 24]))), "beyond"),
        (
            codes_pb2.Kernel(
                id=0, levels_step_exp=200, size=2, levels=_levels_to_bytes(np.array([1, 2]))
            ),
            "NaN or Inf",
        ),
    ],
)
def test_malformed_kernels_are_refused(kernel: codes_pb2.Kernel, match: str) -> None:
    with pytest.raises(CorruptCodeError, match=match):
        Codebook.from_proto(
            codes_pb2.Codebook(kernels=[kernel], decoder_mode=codes_pb2.DECODER_MODE_ADJOINT)
        )


@pytest.mark.parametrize(
    ("version", "readable"), [(1, True), (2, True), (3, True), (4, False), (0, False)]
)
def test_headers_say_version_3_and_older_files_still_read(version: int, readable: bool) -> None:
    """Version 2 may hold packed codes and half-precision kernels, version 3 kernels as levels,
    which older readers would misread: writers say 3, so such readers refuse the file instead."""
    channels = (ChannelInfo("MLII", "mV", 0.0, 1.0, 200.0, 1024, 11),)
    header = StreamHeader(ModelRef("test", "1"), Codebook((np.ones(4, np.float32),)), 360.0, 2048,
                          channels)  # fmt: skip
    message = header.to_proto()
    assert message.format_version == 3
    message.format_version = version
    if readable:
        assert StreamHeader.from_proto(message) == header
    else:
        with pytest.raises(CorruptCodeError, match=f"format version {version} is not supported"):
            StreamHeader.from_proto(message)


def test_quantized_kernels_travel_as_levels_in_a_few_bits_each(mitdb100: np.ndarray) -> None:
    """--adapt rounds its kernels to a power-of-two step (quantize_kernel): the header stores
    their levels' first differences through the range coder. A beat-shaped kernel (a real beat
    of record 100) then costs under a third of its half-precision bytes."""
    beat = np.asarray(mitdb100[:256], dtype=np.float64)
    beat -= beat.mean()
    kernel = quantize_kernel(beat / np.linalg.norm(beat))
    message = Codebook((kernel,)).to_proto()
    assert message.kernels[0].levels
    assert not message.kernels[0].weights_f16
    assert message.kernels[0].ByteSize() < 512 / 3
    back = Codebook.from_proto(codes_pb2.Codebook.FromString(message.SerializeToString()))
    assert np.array_equal(back.kernels[0], kernel)
    # whole steps, the largest 128 to 256 of them, each weight within half a step of its own
    step = 2.0 ** message.kernels[0].levels_step_exp
    levels = kernel / step
    assert np.array_equal(levels, np.rint(levels))
    assert 128 < np.max(np.abs(levels)) <= 256
    assert np.max(np.abs(kernel - beat / np.linalg.norm(beat))) <= step / 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-(1 << 23), 1 << 23), min_size=1, max_size=300),
    st.integers(-140, 90),
)
def test_any_kernel_on_a_power_of_two_grid_round_trips_exactly(levels: list[int], exp: int) -> None:
    kernel = np.ldexp(np.asarray(levels, dtype=np.float64), exp).astype(np.float32)
    back = Codebook.from_proto(Codebook((kernel,)).to_proto())
    assert np.array_equal(back.kernels[0], kernel)
    message = Codebook((kernel,)).to_proto().kernels[0]
    forms = [bool(message.weights), bool(message.weights_f16), bool(message.levels)]
    assert sum(forms) == 1  # the smallest exact form, and only that one


def test_negative_zeros_keep_their_sign_and_quantized_kernels_have_none() -> None:
    kernel = np.array([1.0, -0.0, 2.0, 0.0], dtype=np.float32)
    back = Codebook.from_proto(Codebook((kernel,)).to_proto()).kernels[0]
    assert back.tobytes() == kernel.tobytes()
    rounded = quantize_kernel(np.array([1.0, -1e-9, 0.5]))
    assert not np.any(np.signbit(rounded[rounded == 0]))


def test_a_codebook_of_too_many_weights_is_refused_before_decoding() -> None:
    """Levels cost a fraction of a bit each: a few hundred bytes could ask for millions of weights."""
    zeros = codes_pb2.Kernel(size=65536, levels=_levels_to_bytes(np.zeros(65536, dtype=np.int64)))
    message = codes_pb2.Codebook(decoder_mode=codes_pb2.DECODER_MODE_ADJOINT)
    for i in range(5):
        message.kernels.add().CopyFrom(zeros)
        message.kernels[i].id = i
    assert message.ByteSize() < 2000
    with pytest.raises(CorruptCodeError, match="holds 327680 weights, more than 262144"):
        Codebook.from_proto(message)
