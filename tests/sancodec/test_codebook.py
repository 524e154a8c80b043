"""Codebooks in the .sanc header: float32 kernels, or half precision when that is exact."""

from __future__ import annotations

import numpy as np
import pytest

from sancodec import Codebook, CorruptCodeError
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
