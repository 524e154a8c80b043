"""Codebooks and headers in the .sanc file: float32 or half-precision kernels, format versions."""

from __future__ import annotations

import numpy as np
import pytest

from sancodec import ChannelInfo, Codebook, CorruptCodeError, ModelRef, StreamHeader
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
        (codes_pb2.Kernel(id=0, weights=[1.0], weights_f16=b"\x00\x3c"), "no float ones"),
        (codes_pb2.Kernel(id=0, weights_f16=b"\x00\x7c"), "NaN or Inf"),
    ],
)
def test_malformed_half_precision_kernels_are_refused(kernel: codes_pb2.Kernel, match: str) -> None:
    with pytest.raises(CorruptCodeError, match=match):
        Codebook.from_proto(
            codes_pb2.Codebook(kernels=[kernel], decoder_mode=codes_pb2.DECODER_MODE_ADJOINT)
        )


@pytest.mark.parametrize(("version", "readable"), [(1, True), (2, True), (3, False), (0, False)])
def test_headers_say_version_2_and_version_1_files_still_read(version: int, readable: bool) -> None:
    """Version 2 may hold packed codes and half-precision kernels, which a version-1 reader would
    misread: writers say 2, so such readers refuse the file instead."""
    channels = (ChannelInfo("MLII", "mV", 0.0, 1.0, 200.0, 1024, 11),)
    header = StreamHeader(ModelRef("test", "1"), Codebook((np.ones(4, np.float32),)), 360.0, 2048,
                          channels)  # fmt: skip
    message = header.to_proto()
    assert message.format_version == 2
    message.format_version = version
    if readable:
        assert StreamHeader.from_proto(message) == header
    else:
        with pytest.raises(CorruptCodeError, match=f"format version {version} is not supported"):
            StreamHeader.from_proto(message)
