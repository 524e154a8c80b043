"""Bad input gets the right status and a message naming the problem; the server serves on."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from server_harness import encode_requests, start

from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2

FLOAT32 = codes_pb2.SAMPLE_DTYPE_FLOAT32
CONFIG = codec_pb2.EncodeConfig(model="ecg", sample_rate_hz=360.0, channel_count=1, dtype=FLOAT32)


def _chunk(values: np.ndarray) -> codec_pb2.EncodeRequest:
    return codec_pb2.EncodeRequest(
        chunk=codec_pb2.SignalChunk(samples=values.astype("<f4").tobytes())
    )


def _fails(channel: grpc.Channel, requests: list[codec_pb2.EncodeRequest]) -> grpc.RpcError:
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Encode(iter(requests), timeout=30))
    error = caught.value
    assert "Traceback" not in (error.details() or "")
    # and the server still serves
    assert stub.ListModels(codec_pb2.ListModelsRequest(), timeout=10).models
    return error


def _config(**changes: object) -> codec_pb2.EncodeRequest:
    config = codec_pb2.EncodeConfig()
    config.CopyFrom(CONFIG)
    for key, value in changes.items():
        setattr(config, key, value)
    return codec_pb2.EncodeRequest(config=config)


@pytest.mark.parametrize(
    ("requests", "code", "words"),
    [
        ([_chunk(np.zeros(10))], grpc.StatusCode.FAILED_PRECONDITION, "first message"),
        ([], grpc.StatusCode.FAILED_PRECONDITION, "first message"),
        ([_config(model="nope")], grpc.StatusCode.NOT_FOUND, "no model named 'nope'"),
        ([_config(model_version="9")], grpc.StatusCode.NOT_FOUND, "no version '9'"),
        ([_config(sample_rate_hz=250.0)], grpc.StatusCode.INVALID_ARGUMENT, "360 Hz"),
        ([_config(channel_count=0)], grpc.StatusCode.INVALID_ARGUMENT, "channel count"),
        (
            [_config(dtype=codes_pb2.SAMPLE_DTYPE_UNSPECIFIED)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "dtype",
        ),
        ([_config(), _config()], grpc.StatusCode.FAILED_PRECONDITION, "second config"),
    ],
    ids=[
        "chunk-first",
        "empty",
        "unknown-model",
        "unknown-version",
        "rate",
        "channels",
        "dtype",
        "two-configs",
    ],
)
def test_bad_streams_are_refused(
    channel: grpc.Channel,
    requests: list[codec_pb2.EncodeRequest],
    code: grpc.StatusCode,
    words: str,
) -> None:
    error = _fails(channel, requests)
    assert error.code() == code
    assert words in error.details()


def test_quality_target_needs_a_residual_layer(channel: grpc.Channel) -> None:
    request = _config(model="ecg-lowrate")
    request.config.quality.max_prdn_percent = 5.0
    error = _fails(channel, [request])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no residual layer" in error.details()


def _good(n: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    return np.sin(t / 9.0) + 0.1 * np.random.default_rng(seed).normal(size=n)


def test_bad_chunks_are_answered_in_band_and_the_stream_goes_on(channel: grpc.Channel) -> None:
    bad_nan = _good(100)
    bad_nan[17] = np.nan
    requests = [
        _config(),
        _chunk(_good(3000)),
        _chunk(bad_nan),  # 1: NaN
        codec_pb2.EncodeRequest(
            chunk=codec_pb2.SignalChunk(samples=b"\x00\x01\x02")
        ),  # 2: not whole frames
        codec_pb2.EncodeRequest(chunk=codec_pb2.SignalChunk(samples=b"")),  # 3: empty
        _chunk(np.array([np.inf])),  # 4: Inf
        _chunk(_good(3000, 1)),
    ]
    responses = list(codec_pb2_grpc.CodecServiceStub(channel).Encode(iter(requests), timeout=30))
    statuses = [r.status for r in responses if r.WhichOneof("payload") == "status"]
    assert [(s.index, s.code) for s in statuses] == [(1, 3), (2, 3), (3, 3), (4, 3)]
    assert "NaN or Inf" in statuses[0].message
    assert "frame 17" in statuses[0].message
    assert "whole number of frames" in statuses[1].message
    assert "empty chunk" in statuses[2].message
    summary = responses[-1].summary
    assert summary.rejected_chunk_count == 4
    assert summary.sample_count == 6000  # the good chunks, nothing lost, nothing invented


def _decode(
    channel: grpc.Channel,
    config: codec_pb2.DecodeConfig | None,
    blocks: list[codes_pb2.EncodedBlock],
) -> grpc.RpcError:
    requests = ([codec_pb2.DecodeRequest(config=config)] if config else []) + [
        codec_pb2.DecodeRequest(block=b) for b in blocks
    ]
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Decode(iter(requests), timeout=30))
    assert "Traceback" not in (caught.value.details() or "")
    assert stub.ListModels(codec_pb2.ListModelsRequest(), timeout=10).models
    return caught.value


@pytest.fixture(scope="module")
def coded(server: object) -> list[codes_pb2.EncodedBlock]:
    with grpc.insecure_channel(server.address) as ch:  # type: ignore[attr-defined]
        responses = codec_pb2_grpc.CodecServiceStub(ch).Encode(
            encode_requests(_good(10000)[None, :], 1000), timeout=30
        )
        return [r.block for r in responses if r.WhichOneof("payload") == "block"]


def test_bad_codes_for_decode(channel: grpc.Channel, coded: list[codes_pb2.EncodedBlock]) -> None:
    config = codec_pb2.DecodeConfig(model="ecg", channel_count=1)
    error = _decode(channel, None, coded)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = _decode(channel, config, [coded[0], coded[2]])  # a block missing
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert "block 1" in error.details()
    assert "expected" in error.details()
    foreign = codes_pb2.EncodedBlock()
    foreign.CopyFrom(coded[0])
    foreign.channels[0].channel = 3
    error = _decode(channel, config, [foreign])
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert "channel 3" in error.details()
    damaged = codes_pb2.EncodedBlock()
    damaged.CopyFrom(coded[0])
    damaged.channels[0].payload += b"\x00"  # a code never ends with a zero byte
    error = _decode(channel, config, [damaged])
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert "block 0" in error.details()
    assert "ends with a zero byte" in error.details()
    error = _decode(channel, codec_pb2.DecodeConfig(model="ecg", channel_count=0), coded)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_chunks_are_refused_in_band(shared_data: object) -> None:
    small = start(max_chunk_bytes=4000)
    try:
        with grpc.insecure_channel(small.address) as ch:
            responses = list(
                codec_pb2_grpc.CodecServiceStub(ch).Encode(
                    iter([_config(), _chunk(_good(2000)), _chunk(_good(500))]), timeout=30
                )
            )
        statuses = [r.status for r in responses if r.WhichOneof("payload") == "status"]
        assert [(s.index, s.code) for s in statuses] == [(0, 3)]
        assert "over the 4000-byte limit" in statuses[0].message
        assert responses[-1].summary.sample_count == 500
    finally:
        small.stop()
