from __future__ import annotations

import numpy as np
import pytest
from code_strategies import block_streams, channel_codes, codebooks
from hypothesis import given, settings
from hypothesis import strategies as st

from sancodec import BlockCode, ChannelCode, Quantizer, SanLayer, parse_block
from sancodec.errors import CorruptCodeError, InvalidInputError
from sancodec.metrics import bits_per_sample
from sancodec.sparse_stream import decode_sparse, encode_sparse
from sancodec.v1 import codes_pb2


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_proto_round_trip(data: st.DataObject) -> None:
    codebook = data.draw(codebooks())
    for block in data.draw(block_streams(codebook, channel_count=3)):
        assert parse_block(block.to_bytes()) == block
        assert BlockCode.from_proto(block.to_proto()) == block


def test_each_kernel_codes_its_own_positions_within_the_block() -> None:
    san = SanLayer(
        step_exp=0,
        kernel_ids=np.array([1, 0, 0, 1]),
        positions=np.array([5005, 5010, 5002, 5001]),
        levels=np.array([4, -3, 2, 1]),
    )
    block = BlockCode(5000, 100, (ChannelCode(0, san),))
    message = block.to_proto()
    spikes = {k.kernel_id: k for k in message.channels[0].san.kernels}
    assert {kid: k.count for kid, k in spikes.items()} == {0: 2, 1: 2}
    positions, levels = decode_sparse(spikes[0].bits, 2, 5000, [100])
    assert positions.tolist() == [5002, 5010]
    assert levels.tolist() == [2, -3]
    positions, levels = decode_sparse(spikes[1].bits, 2, 5000, [100])
    assert positions.tolist() == [5001, 5005]
    assert levels.tolist() == [1, 4]


def test_encoded_size_is_what_the_rate_counts() -> None:
    q = Quantizer.from_step(0.05)
    san = SanLayer.from_spikes([0, 0, 0], [10, 300, 700], [1.3, -0.7, 0.9], q, offset=0.2)
    block = BlockCode(0, 1000, (ChannelCode(0, san),))
    payload = block.to_bytes()
    assert len(payload) == block.to_proto().ByteSize()
    # everything a decoder gets is in those bytes: a round trip through them loses nothing
    assert parse_block(payload) == block
    assert bits_per_sample(len(payload), 1000) == 8 * len(payload) / 1000


def test_from_spikes_quantizes_and_drops_zero_levels() -> None:
    q = Quantizer(0)  # step 1
    san = SanLayer.from_spikes([0, 1, 0], [3, 4, 9], [2.4, 0.3, -5.6], q, offset=-1.2)
    assert san.positions.tolist() == [3, 9]
    assert san.levels.tolist() == [2, -6]
    assert san.offset == -1.0
    assert np.allclose(san.amplitudes(), [2.0, -6.0])


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


def _spikes(positions: list[int], levels: list[int], kernel_id: int = 0) -> codes_pb2.KernelSpikes:
    bits = encode_sparse(positions, levels, 0, [1000])  # coded for a longer block than the test's
    return codes_pb2.KernelSpikes(kernel_id=kernel_id, count=len(positions), bits=bits)


def _malformed_blocks() -> list[codes_pb2.EncodedBlock]:
    def block(**san: object) -> codes_pb2.EncodedBlock:
        return codes_pb2.EncodedBlock(
            start_sample=0,
            sample_count=50,
            channels=[codes_pb2.ChannelCode(san=codes_pb2.SanLayer(**san))],
        )

    good = encode_sparse([1, 2], [1, 1], 0, [50])
    return [
        block(kernels=[codes_pb2.KernelSpikes(count=2, bits=good[:1])]),  # bits run out
        block(kernels=[codes_pb2.KernelSpikes(count=3, bits=good)]),
        block(kernels=[codes_pb2.KernelSpikes(count=2**20, bits=b"\x00")]),  # cannot fit
        block(kernels=[codes_pb2.KernelSpikes(count=2**25, bits=b"\x00" * 10)]),
        block(kernels=[_spikes([600], [1])]),  # beyond the block
        block(kernels=[_spikes([1], [1], kernel_id=2), _spikes([3], [1], kernel_id=2)]),
        block(step_exp=100000),
        block(kernels=[_spikes([1], [2**31 - 1])]),
        codes_pb2.EncodedBlock(start_sample=0, sample_count=0),
        codes_pb2.EncodedBlock(start_sample=2**63, sample_count=10),
    ]


@pytest.mark.parametrize("message", _malformed_blocks())
def test_malformed_proto_raises_corrupt_code(message: codes_pb2.EncodedBlock) -> None:
    with pytest.raises(CorruptCodeError):
        parse_block(message.SerializeToString())


@given(st.binary(max_size=64))
def test_random_bytes_never_crash(payload: bytes) -> None:
    try:
        block = parse_block(payload)
    except CorruptCodeError:
        return
    assert parse_block(block.to_bytes()) == block


@given(st.data())
def test_channel_codes_survive_reordering(data: st.DataObject) -> None:
    codebook = data.draw(codebooks(residual=False))
    codes = [data.draw(channel_codes(c, 0, 64, codebook)) for c in (2, 0, 1)]
    assert [c.channel for c in BlockCode(0, 64, tuple(codes)).channels] == [0, 1, 2]
