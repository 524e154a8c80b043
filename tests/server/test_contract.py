"""What the .proto promises a client in any language: units, ADC mappings, counts, numbering."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import wfdb
from server_harness import encode_requests

from sancodec import metrics
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2

FLOAT32, INT16 = codes_pb2.SAMPLE_DTYPE_FLOAT32, codes_pb2.SAMPLE_DTYPE_INT16
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def counts(shared_data: Path) -> np.ndarray:
    """MIT-BIH 100, both leads, 6000 frames of 11-bit ADC counts (200 per mV, 0 mV at 1024)."""
    record = wfdb.rdrecord(str(shared_data / "wfdb" / "mitdb" / "100"), sampto=6000, physical=False)
    return record.d_signal.T.astype(np.int16)


def _physical(counts: np.ndarray, per_mv: float) -> np.ndarray:
    """The counts in physical units: `per_mv` of them per mV, as float32 (the wire's type)."""
    return ((counts.astype(np.float64) - 1024) / 200 * per_mv).astype(np.float32)


def _encode(
    channel: grpc.Channel, signal: np.ndarray, **config: object
) -> list[codec_pb2.EncodeResponse]:
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    return list(stub.Encode(encode_requests(signal, 997, **config), timeout=60))


def _blocks(responses: list[codec_pb2.EncodeResponse]) -> list[codes_pb2.EncodedBlock]:
    return [r.block for r in responses if r.WhichOneof("payload") == "block"]


def _units(units: str, count: int = 2, **adc: float) -> list[codec_pb2.SignalChannel]:
    return [codec_pb2.SignalChannel(name=f"lead{i}", units=units, **adc) for i in range(count)]  # type: ignore[arg-type]


def _refusal(channel: grpc.Channel, signal: np.ndarray, **config: object) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        _encode(channel, signal, **config)
    assert caught.value.code() == INVALID, caught.value.details()
    return caught.value.details() or ""


def test_models_state_their_units(channel: grpc.Channel) -> None:
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    units = {m.ref.name: m.units for m in stub.ListModels(codec_pb2.ListModelsRequest()).models}
    assert units == {"ecg": "mV", "ecg-lowrate": "mV", "ecg-rhythm": "mV", "eeg": "uV"}
    assert stub.GetModel(codec_pb2.GetModelRequest(name="eeg")).model.units == "uV"


def test_a_signal_codes_the_same_in_volts_millivolts_microvolts_and_adc_counts(
    channel: grpc.Channel, counts: np.ndarray
) -> None:
    reference = _blocks(_encode(channel, _physical(counts, 1.0)))  # mV, the model's units
    assert len(reference) == 2  # 6000 frames, 4096-sample blocks
    for units, per_mv in (("mV", 1.0), ("uV", 1e3), ("µV", 1e3), ("μV", 1e3), ("V", 1e-3)):
        coded = _blocks(_encode(channel, _physical(counts, per_mv), channels=_units(units)))
        assert coded == reference, units
    adc = _units("mV", adc_gain=200, adc_baseline=1024)
    assert _blocks(_encode(channel, counts, dtype=INT16, channels=adc)) == reference
    adc_uv = _units("uV", adc_gain=0.2, adc_baseline=1024)  # 0.2 counts per µV
    started = _encode(channel, counts, dtype=INT16, channels=adc_uv)[0].started
    assert [(c.units, c.adc_gain, c.adc_baseline) for c in started.channels] == [
        ("mV", 200, 1024)
    ] * 2


def test_microvolts_on_an_ecg_model_are_not_coded_as_millivolts(
    channel: grpc.Channel, counts: np.ndarray
) -> None:
    """The integrator's finding: µV labelled "uV" once cost 10 bit/sample, coded as mV."""
    signal = _physical(counts, 1e3)
    rates = [
        np.mean([r.quality.bits_per_sample for r in responses if r.HasField("quality")])
        for responses in (_encode(channel, signal, channels=_units("uV")), _encode(channel, signal))
    ]
    assert rates[0] < 2.0 < rates[1]


@pytest.mark.parametrize("units", ["mmHg", "mv", "nV", "counts"])
def test_units_it_cannot_convert_are_refused_by_name(
    channel: grpc.Channel, counts: np.ndarray, units: str
) -> None:
    details = _refusal(channel, _physical(counts, 1.0), channels=_units(units))
    assert repr(units) in details
    assert "'mV'" in details  # the model's units


def test_offset_and_scale_sent_to_encode_are_refused_not_ignored(
    channel: grpc.Channel, counts: np.ndarray
) -> None:
    """A client built on the output-side ChannelInfo sends fields 3 and 4 that Encode has not."""
    old = codes_pb2.ChannelInfo(name="lead", units="mV", scale=2.0).SerializeToString()
    details = _refusal(
        channel, _physical(counts, 1.0), channels=[codec_pb2.SignalChannel.FromString(old)] * 2
    )
    assert "offset and scale" in details


def test_int16_without_an_adc_gain_is_refused_naming_the_field(
    channel: grpc.Channel, counts: np.ndarray
) -> None:
    details = _refusal(channel, counts, dtype=INT16)
    assert "adc_gain" in details
    assert "adc_baseline" in details
    details = _refusal(channel, counts, dtype=INT16, channels=_units("mV", adc_baseline=1024))
    assert "channel 0 ('lead0')" in details
    assert "adc_gain" in details


def _decode(
    channel: grpc.Channel, blocks: list[codes_pb2.EncodedBlock], config: codec_pb2.DecodeConfig
) -> np.ndarray:
    requests = [codec_pb2.DecodeRequest(config=config)]
    requests += [codec_pb2.DecodeRequest(block=b) for b in blocks]
    chunks = [r.chunk for r in codec_pb2_grpc.CodecServiceStub(channel).Decode(iter(requests))]
    frames = [
        np.frombuffer(c.samples, "<f4").reshape(c.sample_count, config.channel_count)
        for c in chunks
    ]
    assert sum(c.sample_count for c in chunks) == sum(b.sample_count for b in blocks)
    return np.concatenate(frames).T.astype(np.float64)


def test_decode_returns_physical_units_whichever_channels_it_is_given(
    channel: grpc.Channel, counts: np.ndarray
) -> None:
    """Channels without a scale (as a client copies them from its Encode config) take the
    model's mapping, in the units they name; those of EncodeStarted give the same samples."""
    mv = _physical(counts, 1.0)
    responses = _encode(
        channel, counts, dtype=INT16, channels=_units("mV", adc_gain=200, adc_baseline=1024)
    )
    blocks, started = _blocks(responses), responses[0].started
    as_started = _decode(
        channel,
        blocks,
        codec_pb2.DecodeConfig(
            codebook=started.codebook, channel_count=2, channels=started.channels
        ),
    )
    assert metrics.prdn(mv[0], as_started[0]) < 25
    encode_side = [
        codes_pb2.ChannelInfo(name=c.name, units=c.units, adc_gain=200, adc_baseline=1024)
        for c in _units("mV")
    ]
    copied = _decode(
        channel, blocks, codec_pb2.DecodeConfig(model="ecg", channel_count=2, channels=encode_side)
    )
    np.testing.assert_allclose(copied, as_started, rtol=1e-6, atol=1e-6)
    in_uv = [codes_pb2.ChannelInfo(units="uV")] * 2
    microvolts = _decode(
        channel, blocks, codec_pb2.DecodeConfig(model="ecg", channel_count=2, channels=in_uv)
    )
    np.testing.assert_allclose(microvolts, as_started * 1e3, rtol=1e-5, atol=1e-3)


def test_decode_with_a_codebook_needs_each_channels_scale(
    channel: grpc.Channel, counts: np.ndarray
) -> None:
    responses = _encode(channel, _physical(counts, 1.0))
    config = codec_pb2.DecodeConfig(codebook=responses[0].started.codebook, channel_count=2,
                                    channels=[codes_pb2.ChannelInfo(units="mV")] * 2)  # fmt: skip
    requests = [codec_pb2.DecodeRequest(config=config)]
    with pytest.raises(grpc.RpcError) as caught:
        list(codec_pb2_grpc.CodecServiceStub(channel).Decode(iter(requests)))
    assert caught.value.code() == INVALID
    assert "scale" in (caught.value.details() or "")


def test_counts_are_per_channel_and_rates_over_all_channels(
    channel: grpc.Channel, counts: np.ndarray
) -> None:
    responses = _encode(channel, _physical(counts, 1.0))
    summary, blocks = responses[-1].summary, _blocks(responses)
    assert summary.sample_count == counts.shape[1] == sum(b.sample_count for b in blocks)
    assert summary.code_bytes == sum(b.ByteSize() for b in blocks)
    for r in responses:
        if r.WhichOneof("payload") == "block":
            samples = r.block.sample_count * 2  # both channels
            assert r.quality.bits_per_sample == pytest.approx(8 * r.block.ByteSize() / samples)
            assert r.quality.compression_ratio == pytest.approx(samples * 4 / r.block.ByteSize())


def test_statuses_and_errors_number_chunks_from_zero(channel: grpc.Channel) -> None:
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    config = codec_pb2.EncodeConfig(model="ecg", sample_rate_hz=360, channel_count=1, dtype=FLOAT32)
    good = codec_pb2.EncodeRequest(
        chunk=codec_pb2.SignalChunk(samples=np.zeros(100, "<f4").tobytes())
    )
    bad = codec_pb2.EncodeRequest(chunk=codec_pb2.SignalChunk(samples=b"\x00" * 3))
    first = codec_pb2.EncodeRequest(config=config)
    responses = list(stub.Encode(iter([first, good, bad, good])))
    statuses = [r.status for r in responses if r.WhichOneof("payload") == "status"]
    assert [s.index for s in statuses] == [1]
    assert responses[-1].summary.rejected_chunk_count == 1
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Encode(iter([first, good, good, first])))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "chunk 2 is a second config" in (caught.value.details() or "")


def test_health_answers_for_the_names_the_docs_give(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "sancodec.v1.CodecService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as caught:
        health.Check(health_pb2.HealthCheckRequest(service="sancodec.v1.Other"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
