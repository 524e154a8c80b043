"""The packed channel code (EntropyCoder.PACKED): both layers and their side information in one
lean range code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from beat_codes import beat_blocks, beat_kernel
from hypothesis import given
from hypothesis import strategies as st

from sancodec import (
    BlockCode,
    ChannelCode,
    Codebook,
    CorruptCodeError,
    EntropyCoder,
    InvalidInputError,
    ResidualLayer,
    ResidualSpec,
    SanLayer,
    parse_block,
)
from sancodec.binary_stream import RangeDecoder, RangeEncoder, probabilities
from sancodec.v1 import codes_pb2


def _block(start: int = 4096, coder: EntropyCoder = EntropyCoder.PACKED) -> BlockCode:
    san = SanLayer(-19, [0, 1, 0], [start + 10, start + 10, start + 900], [40, -3, 38], -9, 2)
    residual = ResidualLayer(-6, [0, 3, 64, 2000], [5, -1, 2, 1], coder)
    return BlockCode(start, 2048, (ChannelCode(0, san, residual), ChannelCode(1, san, residual)))


def test_packed_round_trip_keeps_every_value_and_ties_between_kernels() -> None:
    block = _block()
    assert parse_block(block.to_bytes()) == block
    message = block.to_proto()
    assert all(c.packed and not c.HasField("san") and not c.HasField("residual")
               for c in message.channels)  # fmt: skip


@given(bits=st.lists(st.booleans(), max_size=400), direct=st.integers(0, 2**20 - 1))
def test_the_lean_flush_decodes_like_the_full_one(bits: list[bool], direct: int) -> None:
    """The lean flush leaves out 3 zero bytes, which the decoder supplies, and nothing else."""
    codes = []
    for lean in (False, True):
        probs, enc = probabilities(1), RangeEncoder()
        for b in bits:
            enc.bit(probs, 0, int(b))
        enc.direct(direct, 20)
        codes.append(enc.finish(lean=lean))
    full, lean_code = codes
    assert len(lean_code) == len(full) - 3
    probs, dec = probabilities(1), RangeDecoder(lean_code, lean=True)
    assert [bool(dec.bit(probs, 0)) for _ in bits] == bits
    assert dec.direct(20) == direct
    dec.finish()


def test_damaged_packed_codes_are_refused() -> None:
    message = _block().to_proto()
    packed = message.channels[0].packed
    for bad, match in (
        (packed[:-1], "ends before"),
        (packed + b"\x07", "after its last value"),
    ):
        message.channels[0].packed = bad
        with pytest.raises(CorruptCodeError, match=match):
            parse_block(message.SerializeToString())
    message.channels[0].packed = packed
    message.channels[0].san.step_exp = 3
    with pytest.raises(CorruptCodeError, match="no separate layers"):
        parse_block(message.SerializeToString())
    layered = _block(coder=EntropyCoder.RICE).to_proto()
    layered.channels[0].residual.coder = codes_pb2.ENTROPY_CODER_PACKED
    with pytest.raises(CorruptCodeError, match="not packed"):
        parse_block(layered.SerializeToString())


@given(st.binary(max_size=64), st.integers(0, 2**20))
def test_any_packed_bytes_decode_or_raise_corrupt_code(payload: bytes, start: int) -> None:
    message = codes_pb2.EncodedBlock(start_sample=start, sample_count=2048)
    message.channels.add(channel=0, packed=payload)
    try:
        block = parse_block(message.SerializeToString())
    except CorruptCodeError:
        return
    assert parse_block(block.to_bytes()) == block


def test_a_packed_real_ecg_code_is_the_same_code_in_fewer_bytes(
    shared_data: Path, mitdb100: np.ndarray
) -> None:
    """Record 100 with a beat kernel and a wavelet residual: packing keeps every level and saves
    the layers' side information (measured: 16 bytes of every 2048-sample block of 360-470)."""
    import wfdb

    beats = wfdb.rdann(str(shared_data / "wfdb" / "mitdb" / "100"), "atr", sampto=20000).sample
    beats = beats[(beats > 200) & (beats < 19800)]
    x = mitdb100[None, :] / 200.0
    codebook = Codebook((beat_kernel(x[0], beats),), residual=ResidualSpec("bior4.4", 5))
    coded = {
        coder: beat_blocks(x, beats, codebook, residual_step=0.02, coder=coder)
        for coder in (EntropyCoder.ADAPTIVE_BINARY, EntropyCoder.PACKED)
    }
    for binary, packed in zip(*coded.values(), strict=True):
        assert parse_block(packed.to_bytes()) == packed
        assert binary.channels[0].san == packed.channels[0].san
        a, b = binary.channels[0].residual, packed.channels[0].residual
        assert a is not None
        assert b is not None
        assert np.array_equal(a.indices, b.indices)
        assert np.array_equal(a.levels, b.levels)
        assert len(packed.to_bytes()) <= len(binary.to_bytes()) - 15


def test_a_spike_past_its_block_is_refused_when_packing() -> None:
    """The residual's bands run 64 past an odd block; spikes may not."""
    san = SanLayer(0, [0], [2058], [1])
    code = ChannelCode(0, san, ResidualLayer(0, [], [], EntropyCoder.PACKED))
    with pytest.raises(InvalidInputError, match="outside its block"):
        code.to_proto(0, 2048)
