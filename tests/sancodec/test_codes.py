"""Block codes as values and as one range-coded payload per channel (sancodec.payload)."""

from __future__ import annotations

import numpy as np
import pytest
from code_strategies import block_streams, channel_codes, codebooks
from hypothesis import given, settings
from hypothesis import strategies as st

from sancodec import (
    BlockCode,
    ChannelCode,
    Codebook,
    Quantizer,
    ResidualLayer,
    ResidualSpec,
    SanLayer,
    block_bytes,
    encode_block,
    parse_block,
)
from sancodec.errors import CorruptCodeError, InvalidInputError
from sancodec.v1 import codes_pb2

CODEBOOK = Codebook((np.ones(8, np.float32), np.ones(3, np.float32)), residual=ResidualSpec())


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_every_layer_combination_round_trips(data: st.DataObject) -> None:
    """Random codes, with and without spikes and residual layers, in random codebooks."""
    codebook = data.draw(codebooks())
    for block in data.draw(block_streams(codebook, channel_count=3)):
        data_bytes = block_bytes(block, codebook)  # the stream's codebook before the block
        back = parse_block(data_bytes, codebook)
        assert back == block
        assert back.stored_bytes == len(data_bytes)
        assert sum(back.channel_bytes) < len(data_bytes)
        codebook = codebook.updated(back.kernels)


def test_a_channel_is_one_payload_and_the_rate_counts_the_message() -> None:
    q = Quantizer.from_step(0.05)
    san = SanLayer.from_spikes([0, 0, 1], [10, 300, 700], [1.3, -0.7, 0.9], q, offset=0.2)
    residual = ResidualLayer(-6, np.array([0, 5, 900]), np.array([3, -1, 2]))
    block = BlockCode(0, 1000, (ChannelCode(0, san, residual),))
    message = encode_block(block, CODEBOOK)
    assert [c.channel for c in message.channels] == [0]
    assert message.channels[0].payload
    assert len(block_bytes(block, CODEBOOK)) == message.ByteSize()
    assert parse_block(message.SerializeToString(), CODEBOOK) == block


def test_from_spikes_quantizes_and_drops_zero_levels() -> None:
    q = Quantizer(0)  # step 1
    san = SanLayer.from_spikes([0, 1, 0], [3, 4, 9], [2.4, 0.3, -5.6], q, offset=-1.2)
    assert san.positions.tolist() == [3, 9]
    assert san.levels.tolist() == [2, -6]
    assert san.offset == -1.0
    assert np.allclose(san.amplitudes(), [2.0, -6.0])
    assert san.without_spikes().spike_count == 0
    assert san.without_spikes().offset == san.offset


def test_invalid_codes_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        SanLayer(0, np.array([0, 0]), np.array([4, 4]), np.array([1, 2]))
    with pytest.raises(InvalidInputError, match="differ in length"):
        SanLayer(0, np.array([0]), np.array([4, 5]), np.array([1, 2]))
    san = SanLayer(0, np.array([0]), np.array([150]), np.array([1]))
    with pytest.raises(InvalidInputError, match="outside its block"):
        BlockCode(0, 100, (ChannelCode(0, san),))
    with pytest.raises(InvalidInputError, match="occurs twice"):
        empty = SanLayer(0, np.array([]), np.array([]), np.array([]))
        BlockCode(0, 10, (ChannelCode(1, empty), ChannelCode(1, empty)))
    with pytest.raises(InvalidInputError, match="not in a codebook of 2"):
        block_bytes(BlockCode(0, 10, (ChannelCode(0, SanLayer(0, [2], [3], [1])),)), CODEBOOK)
    # a level beyond 31 bits is named before a zero level, a negative position before both
    with pytest.raises(InvalidInputError, match="beyond"):
        SanLayer(0, np.array([0, 0]), np.array([1, 2]), np.array([0, 2**30]))
    with pytest.raises(InvalidInputError, match="non-negative"):
        SanLayer(0, np.array([0, 0]), np.array([-1, 2]), np.array([0, 2**30]))
    with pytest.raises(InvalidInputError, match="beyond"):
        ResidualLayer(0, np.array([1, 2]), np.array([0, -(2**30)]))


def test_dense_levels_are_checked_before_they_are_kept() -> None:
    assert ResidualLayer.from_levels(0, np.array([0, 3, 0, -2])) == ResidualLayer(
        0, np.array([1, 3]), np.array([3, -2])
    )
    for dense in (np.array([2**64 - 1], dtype=np.uint64), np.array([-(2**40)])):
        with pytest.raises(InvalidInputError, match="beyond"):
            ResidualLayer.from_levels(0, dense)
    for dense in (np.array([1.5]), np.zeros((2, 2), dtype=int)):
        with pytest.raises(InvalidInputError, match="1-D integers"):
            ResidualLayer.from_levels(0, dense)


def _payload_of(block: BlockCode) -> bytes:
    return encode_block(block, CODEBOOK).channels[0].payload


def _malformed_blocks() -> list[codes_pb2.EncodedBlock]:
    def block(payload: bytes, count: int = 50, start: int = 0) -> codes_pb2.EncodedBlock:
        return codes_pb2.EncodedBlock(
            start_sample=start, sample_count=count,
            channels=[codes_pb2.ChannelCode(channel=0, payload=payload)],
        )  # fmt: skip

    spikes = SanLayer(0, [0, 0], [900, 950], [5, 7])
    far = _payload_of(BlockCode(0, 1000, (ChannelCode(0, spikes),)))
    many = SanLayer(0, np.zeros(400, int), np.arange(400), np.ones(400, int))
    crowded = _payload_of(BlockCode(0, 400, (ChannelCode(0, many),)))
    return [
        block(far),  # spikes beyond a 50-sample block
        block(crowded, count=2),  # more spikes than the block can hold
        block(b"\xff" * 64),  # junk
        codes_pb2.EncodedBlock(start_sample=0, sample_count=0),
        codes_pb2.EncodedBlock(start_sample=2**63, sample_count=10),
        codes_pb2.EncodedBlock(
            start_sample=0,
            sample_count=10,
            channels=[
                codes_pb2.ChannelCode(
                    channel=0,
                    payload=_payload_of(
                        BlockCode(0, 10, (ChannelCode(0, SanLayer(0, [], [], [])),))
                    ),
                ),
                codes_pb2.ChannelCode(channel=0, payload=b""),
            ],
        ),
    ]


@pytest.mark.parametrize("message", _malformed_blocks())
def test_malformed_blocks_raise_corrupt_code(message: codes_pb2.EncodedBlock) -> None:
    with pytest.raises(CorruptCodeError):
        parse_block(message.SerializeToString(), CODEBOOK)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=96))
def test_random_bytes_never_crash(payload: bytes) -> None:
    try:
        block = parse_block(payload, CODEBOOK)
    except CorruptCodeError:
        return
    assert parse_block(block_bytes(block, CODEBOOK), CODEBOOK) == block


@given(st.data())
def test_channel_codes_survive_reordering(data: st.DataObject) -> None:
    codebook = data.draw(codebooks(residual=False))
    codes = [data.draw(channel_codes(c, 0, 64, codebook)) for c in (2, 0, 1)]
    assert [c.channel for c in BlockCode(0, 64, tuple(codes)).channels] == [0, 1, 2]
