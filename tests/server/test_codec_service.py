"""The codec service against a real server on loopback, with the shipped bundles and real ECG."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import wfdb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_harness import encode_requests

from sancodec import Codebook, decode, decode_block, metrics
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2

FLOAT32, INT16 = codes_pb2.SAMPLE_DTYPE_FLOAT32, codes_pb2.SAMPLE_DTYPE_INT16


@pytest.fixture(scope="module")
def ecg(shared_data: Path) -> np.ndarray:
    """MIT-BIH 100, both leads, 12000 samples, in mV: (2, n)."""
    return wfdb.rdrecord(
        str(shared_data / "wfdb" / "mitdb" / "100"), sampto=12000
    ).p_signal.T.copy()


def encode(
    channel: grpc.Channel, signal: np.ndarray, chunk: int, **config: object
) -> list[codec_pb2.EncodeResponse]:
    return list(
        codec_pb2_grpc.CodecServiceStub(channel).Encode(encode_requests(signal, chunk, **config))
    )


def blocks(responses: list[codec_pb2.EncodeResponse]) -> list[codes_pb2.EncodedBlock]:
    return [r.block for r in responses if r.WhichOneof("payload") == "block"]


def test_models_are_listed_with_their_provider(channel: grpc.Channel) -> None:
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    models = {m.ref.name: m for m in stub.ListModels(codec_pb2.ListModelsRequest()).models}
    assert set(models) == {"ecg", "ecg-lowrate", "ecg-rhythm", "eeg"}
    assert models["ecg"].execution_provider == "CPUExecutionProvider"
    assert models["ecg"].test_metrics["bits_per_sample"] > 0
    assert stub.GetModel(codec_pb2.GetModelRequest(name="ecg")).model.ref.version == "1"
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModel(codec_pb2.GetModelRequest(name="ecg", version="9"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "has no version '9'" in caught.value.details()


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "sancodec.v1.CodecService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING


def test_encode_decode_round_trip_matches_the_offline_decoder(
    channel: grpc.Channel, ecg: np.ndarray
) -> None:
    responses = encode(channel, ecg, 997)
    started = responses[0].started
    assert started.execution_provider == "CPUExecutionProvider"
    summary = responses[-1].summary
    coded = blocks(responses)
    assert summary.block_count == len(coded) == 3  # ceil(12000 / 4096)
    assert summary.sample_count == 12000
    codebook = Codebook.from_proto(started.codebook)
    scale = started.channels[0].scale
    offline = decode([decode_block(b, codebook) for b in coded], codebook, 2) * scale
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    config = codec_pb2.DecodeConfig(model="ecg", channel_count=2)
    requests = [codec_pb2.DecodeRequest(config=config)] + [
        codec_pb2.DecodeRequest(block=b) for b in coded
    ]
    chunks = [r.chunk for r in stub.Decode(iter(requests))]
    assert [c.start_sample for c in chunks] == sorted(c.start_sample for c in chunks)
    served = np.concatenate(
        [np.frombuffer(c.samples, "<f4").reshape(-1, 2).T for c in chunks], axis=1
    )
    assert np.allclose(served, offline, atol=1e-5)
    assert metrics.prdn(ecg[0], served[0]) < 25
    qualities = [r.quality for r in responses if r.WhichOneof("payload") == "block"]
    assert all(q.bits_per_sample > 0 for q in qualities)
    spikes = [sum(c.san.spike_count for c in decode_block(b, codebook).channels) for b in coded]
    assert [q.spike_count for q in qualities] == spikes


def test_codes_do_not_depend_on_chunking(channel: grpc.Channel, ecg: np.ndarray) -> None:
    signal = ecg[:, :5000]
    reference = blocks(encode(channel, signal, signal.shape[1]))
    for chunk in (1, 997, 5000):
        assert blocks(encode(channel, signal, chunk)) == reference


def test_int16_counts_with_their_adc_map(channel: grpc.Channel, shared_data: Path) -> None:
    record = wfdb.rdrecord(str(shared_data / "wfdb" / "mitdb" / "100"), sampto=6000, physical=False)
    counts = record.d_signal.T.astype(np.int16)
    infos = [
        codec_pb2.SignalChannel(name=n, units="mV", adc_gain=200, adc_baseline=1024)
        for n in record.sig_name
    ]
    as_counts = blocks(encode(channel, counts, 2048, dtype=INT16, channels=infos))
    physical = ((counts.astype(np.float64) - 1024) / 200).astype(np.float32)
    assert as_counts == blocks(encode(channel, physical, 2048))


def test_prdn_target_is_met_and_reported(channel: grpc.Channel, ecg: np.ndarray) -> None:
    target = codec_pb2.QualityTarget(max_prdn_percent=5.0)
    responses = encode(channel, ecg[:1, :8192], 4096, quality=target)
    qualities = [r.quality for r in responses if r.WhichOneof("payload") == "block"]
    assert qualities
    assert all(q.prdn_percent <= 5.0 for q in qualities)


def test_no_seams_at_block_borders(channel: grpc.Channel, ecg: np.ndarray) -> None:
    """The error within 32 samples of a block border is no worse than elsewhere."""
    responses = encode(channel, ecg[:1], 3000)
    started, coded = responses[0].started, blocks(responses)
    codebook = Codebook.from_proto(started.codebook)
    decoded = decode([decode_block(b, codebook) for b in coded], codebook, 1)
    error = ecg[0] - decoded[0] * started.channels[0].scale
    near = np.zeros(error.size, dtype=bool)
    for block in coded[1:]:
        near[block.start_sample - 32 : block.start_sample + 32] = True
    rms_near = np.sqrt(np.mean(error[near] ** 2))
    rms_far = np.sqrt(np.mean(error[~near] ** 2))
    assert near.sum() == 64 * (len(coded) - 1)
    assert rms_near <= 1.25 * rms_far


def test_bit_budget_is_met_and_reported(channel: grpc.Channel, ecg: np.ndarray) -> None:
    target = codec_pb2.QualityTarget(max_bits_per_sample=1.0)
    responses = encode(channel, ecg[:1, :8192], 4096, quality=target)
    qualities = [r.quality for r in responses if r.WhichOneof("payload") == "block"]
    assert len(qualities) == 2
    assert all(q.bits_per_sample <= 1.0 and not q.target_missed for q in qualities)


def test_telemetry_counts_what_was_served(
    server: object, channel: grpc.Channel, ecg: np.ndarray
) -> None:
    registry = server.telemetry.registry  # type: ignore[attr-defined]
    labels = {"model": "ecg", "version": "1"}
    before = registry.get_sample_value("sancodec_blocks_total", labels) or 0.0
    responses = encode(channel, ecg[:, :6144], 2048)
    produced = len(blocks(responses))
    assert registry.get_sample_value("sancodec_blocks_total", labels) == before + produced
    assert registry.get_sample_value("sancodec_block_prdn_percent_count", labels) >= produced
    assert (
        registry.get_sample_value(
            "sancodec_model_loaded", {**labels, "provider": "CPUExecutionProvider"}
        )
        == 1
    )
    assert registry.get_sample_value("sancodec_ready") == 1
    assert registry.get_sample_value("sancodec_rpcs_total", {"method": "Encode", "code": "OK"}) >= 1


def test_a_bit_budget_too_small_for_any_code_says_so_in_band(
    channel: grpc.Channel, ecg: np.ndarray
) -> None:
    target = codec_pb2.QualityTarget(max_bits_per_sample=0.001)
    responses = encode(channel, ecg[:1, :4096], 4096, quality=target)
    qualities = [r.quality for r in responses if r.WhichOneof("payload") == "block"]
    assert qualities
    assert all("cannot be met" in q.target_missed for q in qualities)


def test_a_stream_prdn_target_is_met_pooled(channel: grpc.Channel, ecg: np.ndarray) -> None:
    target = codec_pb2.QualityTarget(stream_prdn_percent=8.0)
    responses = encode(channel, ecg[:1], 3000, quality=target)
    started, coded = responses[0].started, blocks(responses)
    codebook = Codebook.from_proto(started.codebook)
    decoded = decode([decode_block(b, codebook) for b in coded], codebook, 1)[0]
    assert metrics.prdn(ecg[0], decoded * started.channels[0].scale) == pytest.approx(8.0, rel=0.3)
