"""Hostile input: bad bytes, out-of-range samples, decode bombs and wide streams get the right
answer, bounded work and no traceback in the log; the server serves on."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_harness import RunningServer, start

from sancodec import BlockCode, ChannelCode, Codebook, SanLayer, encode_block
from sancodec.bundle import find_bundle
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2

FLOAT32 = codes_pb2.SAMPLE_DTYPE_FLOAT32
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a truncated field key: no protobuf message parses from it


def _raw(channel: grpc.Channel, method: str, streaming: bool) -> grpc.RpcError:
    """Call `method` with bytes that are not a message."""
    ident = lambda b: b  # noqa: E731
    with pytest.raises(grpc.RpcError) as caught:
        if streaming:
            call = channel.stream_stream(
                method, request_serializer=ident, response_deserializer=ident
            )
            list(call(iter([GARBAGE]), timeout=10))
        else:
            unary = channel.unary_unary(
                method, request_serializer=ident, response_deserializer=ident
            )
            unary(GARBAGE, timeout=10)
    return caught.value


@pytest.mark.parametrize(
    ("method", "streaming", "code"),
    [
        ("/sancodec.v1.CodecService/GetModel", False, grpc.StatusCode.INVALID_ARGUMENT),
        ("/sancodec.v1.CodecService/ListModels", False, grpc.StatusCode.INVALID_ARGUMENT),
        ("/sancodec.v1.CodecService/Encode", True, grpc.StatusCode.INVALID_ARGUMENT),
        ("/sancodec.v1.CodecService/Decode", True, grpc.StatusCode.DATA_LOSS),
        ("/grpc.health.v1.Health/Check", False, grpc.StatusCode.INVALID_ARGUMENT),
        ("/grpc.health.v1.Health/Watch", True, grpc.StatusCode.INVALID_ARGUMENT),
        (
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            True,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
def test_malformed_messages_are_the_clients_fault_and_leave_no_traceback(
    channel: grpc.Channel,
    method: str,
    streaming: bool,
    code: grpc.StatusCode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        error = _raw(channel, method, streaming)
    assert error.code() == code, error.details()
    assert "does not parse" in (error.details() or "")
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def _chunk(values: np.ndarray) -> codec_pb2.EncodeRequest:
    return codec_pb2.EncodeRequest(
        chunk=codec_pb2.SignalChunk(samples=values.astype("<f4").tobytes())
    )


def test_out_of_range_values_are_refused_in_band_and_nothing_accepted_is_lost(
    channel: grpc.Channel,
) -> None:
    good = np.sin(np.arange(3000) / 9.0)
    loud, huge = good[:100].copy(), good[:100].copy()
    loud[7], huge[9] = 1e8, 1e38
    config = codec_pb2.EncodeConfig(
        model="ecg", sample_rate_hz=360.0, channel_count=1, dtype=FLOAT32
    )
    requests = [
        codec_pb2.EncodeRequest(config=config),
        _chunk(good),
        _chunk(loud),
        _chunk(huge),
        _chunk(good),
    ]
    responses = list(codec_pb2_grpc.CodecServiceStub(channel).Encode(iter(requests), timeout=30))
    statuses = [r.status for r in responses if r.WhichOneof("payload") == "status"]
    assert [(s.index, s.code) for s in statuses] == [(1, 3), (2, 3)]
    assert "chunk 1: channel 0 (ch0), frame 7: 1e+08 mV is beyond the ±" in statuses[0].message
    assert "chunk 2: channel 0 (ch0), frame 9: 1e+38 mV" in statuses[1].message
    assert "NaN" not in statuses[1].message
    assert responses[-1].summary.sample_count == 6000  # both good chunks coded
    assert responses[-1].summary.rejected_chunk_count == 2


def _decode(channel: grpc.Channel, config: codec_pb2.DecodeConfig, blocks: list[codes_pb2.EncodedBlock]) -> list[codec_pb2.DecodeResponse] | grpc.RpcError:  # fmt: skip
    requests = [codec_pb2.DecodeRequest(config=config)] + [
        codec_pb2.DecodeRequest(block=b) for b in blocks
    ]
    try:
        return list(codec_pb2_grpc.CodecServiceStub(channel).Decode(iter(requests), timeout=30))
    except grpc.RpcError as exc:
        return exc


ECG = find_bundle(Path(__file__).resolve().parents[2] / "models", "ecg").manifest.codebook


def _flat_block(
    start: int, count: int, channels: int, codebook: Codebook = ECG
) -> codes_pb2.EncodedBlock:
    """A block of flat channels, coded under `codebook`'s tables (the ecg model's by default)."""
    codes = tuple(
        ChannelCode(c, SanLayer(0, [], [], [], offset_level=c + 1)) for c in range(channels)
    )
    return encode_block(BlockCode(start, count, codes), codebook)


def test_decode_bombs_are_refused_before_allocating(channel: grpc.Channel) -> None:
    config = codec_pb2.DecodeConfig(model="ecg", channel_count=1)
    bomb = _flat_block(0, 1 << 26, 1)  # 28 bytes that claim 2^26 samples
    assert bomb.ByteSize() < 40
    error = _decode(channel, config, [bomb])
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert "more than the block length 4096" in error.details()
    wide = codec_pb2.DecodeConfig(model="ecg", channel_count=256)
    error = _decode(channel, wide, [_flat_block(0, 1 << 20, 256)])
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.DATA_LOSS
    long_kernel = Codebook((np.ones(65536, np.float32),)).to_proto()
    custom = codec_pb2.DecodeConfig(codebook=long_kernel, channel_count=1)
    error = _decode(channel, custom, [])
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "kernel of 65536 taps" in error.details()
    short = Codebook((np.ones(16, np.float32),))
    own = codec_pb2.DecodeConfig(codebook=short.to_proto(), channel_count=256)
    error = _decode(channel, own, [_flat_block(0, 1 << 16, 256, short)])  # 2^24 values
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert "more than the block length 16384" in error.details()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_wide_stream_decodes_in_chunks_under_the_send_limit() -> None:
    small: RunningServer = start(max_message_bytes=1 << 20, max_chunk_bytes=1 << 19)
    try:
        with grpc.insecure_channel(small.address) as ch:
            config = codec_pb2.DecodeConfig(model="ecg", channel_count=256)
            blocks = [_flat_block(2048 * b, 2048, 256) for b in range(3)]  # 2 MiB a block
            responses = _decode(ch, config, blocks)
        assert not isinstance(responses, grpc.RpcError), responses.details()
        chunks = [r.chunk for r in responses]
        assert all(c.ByteSize() <= 1 << 20 for c in chunks)
        assert sum(c.sample_count for c in chunks) == 3 * 2048
        assert [c.start_sample for c in chunks] == list(
            np.cumsum([0] + [c.sample_count for c in chunks[:-1]])
        )
        frames = np.frombuffer(b"".join(c.samples for c in chunks), "<f4").reshape(-1, 256)
        assert np.all(np.isfinite(frames))
        assert np.all(frames[:, 5] == frames[0, 5])
        assert frames[0, 5] != frames[0, 4]
    finally:
        small.stop()
