"""Telemetry: exact sample values on a fresh registry, promtool's lint, and the HTTP exposition."""

from __future__ import annotations

import math
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from server import telemetry
from server.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[2]
ECG = {"model": "ecg", "version": "1"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def tele(registry: CollectorRegistry) -> Iterator[Telemetry]:
    t = Telemetry(registry, build_version="9.9.9")
    yield t
    t.close()


@pytest.fixture(scope="module")
def promtool() -> str:
    script = REPO / "tools" / "ensure_promtool.sh"
    done = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"tools/ensure_promtool.sh failed:\n{done.stderr}{done.stdout}")
    assert done.stderr == "", "ensure_promtool.sh must be quiet on success"
    return done.stdout.strip()


def _block(tele: Telemetry, **overrides: float) -> None:
    figures: dict[str, float] = {
        "compression_ratio": 10.0,
        "bits_per_sample": 1.6,
        "normalized_loss": 0.05,
        "prdn_percent": 4.0,
        "flithos": 0.12,
        "latency_s": 0.002,
    }
    figures.update(overrides)
    tele.observe_block("ecg", "1", samples=256, raw_bytes=1024, encoded_bytes=100, **figures)


def _populate(tele: Telemetry) -> None:
    _block(tele)
    _block(tele, prdn_percent=math.nan, compression_ratio=math.inf)
    tele.observe_decoded_block("ecg", "1", samples=256, latency_s=0.001)
    tele.observe_rpc("Encode", "OK", 1.5)
    tele.observe_rpc("Decode", "INVALID_ARGUMENT", 0.01)
    tele.observe_error("Decode", "INVALID_ARGUMENT")
    tele.stream_started("Encode")
    tele.observe_batch(8)
    tele.set_queue_depth(3)
    tele.set_models([("ecg", "1", "CUDAExecutionProvider")])
    tele.set_ready(True)


def _promtool_check(promtool: str, payload: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=payload.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_blocks_count_samples_bytes_and_quality(
    tele: Telemetry, registry: CollectorRegistry
) -> None:
    _block(tele)
    _block(tele, compression_ratio=20.0, prdn_percent=6.0, latency_s=0.004)
    get = registry.get_sample_value
    assert get("sancodec_blocks_total", ECG) == 2
    assert get("sancodec_samples_total", ECG) == 512
    assert get("sancodec_raw_bytes_total", ECG) == 2048
    assert get("sancodec_encoded_bytes_total", ECG) == 200
    assert get("sancodec_block_compression_ratio_count", ECG) == 2
    assert get("sancodec_block_compression_ratio_sum", ECG) == 30
    assert get("sancodec_block_compression_ratio_bucket", {**ECG, "le": "10.0"}) == 1
    assert get("sancodec_block_compression_ratio_bucket", {**ECG, "le": "20.0"}) == 2
    assert get("sancodec_block_prdn_percent_sum", ECG) == 10
    # Bits per sample are exported in the base unit, bytes.
    assert get("sancodec_block_bytes_per_sample_sum", ECG) == pytest.approx(0.4)
    assert get("sancodec_block_normalized_loss_sum", ECG) == pytest.approx(0.1)
    assert get("sancodec_block_flithos_count", ECG) == 2
    assert get("sancodec_block_latency_seconds_sum", ECG) == pytest.approx(0.006)
    assert get("sancodec_block_quality_undefined_total", ECG) is None
    assert get("sancodec_blocks_total", {"model": "ecg", "version": "2"}) is None


def test_non_finite_figures_are_counted_not_observed(
    tele: Telemetry, registry: CollectorRegistry
) -> None:
    _block(tele, prdn_percent=math.nan, normalized_loss=math.inf, flithos=math.inf)
    _block(tele)
    get = registry.get_sample_value
    assert get("sancodec_block_quality_undefined_total", ECG) == 3
    assert get("sancodec_block_prdn_percent_count", ECG) == 1
    assert get("sancodec_block_prdn_percent_sum", ECG) == 4
    assert get("sancodec_block_normalized_loss_count", ECG) == 1
    assert get("sancodec_block_flithos_count", ECG) == 1
    assert get("sancodec_block_compression_ratio_count", ECG) == 2
    assert get("sancodec_blocks_total", ECG) == 2


def test_beat_agreement_only_where_given(tele: Telemetry, registry: CollectorRegistry) -> None:
    tele.observe_block("ecg", "1", compression_ratio=10.0, bits_per_sample=1.6, normalized_loss=0.05,
                       prdn_percent=4.0, flithos=0.12, samples=256, raw_bytes=1024, encoded_bytes=100,
                       latency_s=0.002, beat_agreement_ratio=5 / 6)  # fmt: skip
    _block(tele)  # no beats in the block, or a model that is not ECG
    get = registry.get_sample_value
    assert get("sancodec_blocks_total", ECG) == 2
    assert get("sancodec_block_beat_agreement_ratio_count", ECG) == 1
    assert get("sancodec_block_beat_agreement_ratio_sum", ECG) == pytest.approx(5 / 6)
    assert get("sancodec_block_beat_agreement_ratio_bucket", {**ECG, "le": "0.8"}) == 0
    assert get("sancodec_block_beat_agreement_ratio_bucket", {**ECG, "le": "0.85"}) == 1


def test_decoded_blocks(tele: Telemetry, registry: CollectorRegistry) -> None:
    tele.observe_decoded_block("ecg", "1", samples=300, latency_s=0.003)
    tele.observe_decoded_block("ecg", "1", samples=200, latency_s=0.001)
    get = registry.get_sample_value
    assert get("sancodec_decoded_samples_total", ECG) == 500
    assert get("sancodec_decoded_blocks_total", ECG) == 2
    assert get("sancodec_decode_block_latency_seconds_count", ECG) == 2
    assert get("sancodec_decode_block_latency_seconds_sum", ECG) == pytest.approx(0.004)
    assert get("sancodec_block_latency_seconds_count", ECG) is None
    assert get("sancodec_blocks_total", ECG) is None


def test_rpcs_and_errors(tele: Telemetry, registry: CollectorRegistry) -> None:
    tele.observe_rpc("Encode", "OK", 2.0)
    tele.observe_rpc("Encode", "OK", 40.0)
    tele.observe_rpc("Encode", "NOT_FOUND", 0.01)
    tele.observe_error("Encode", "NOT_FOUND")
    tele.observe_error("Encode", "INVALID_ARGUMENT")
    tele.observe_error("Encode", "INVALID_ARGUMENT")
    get = registry.get_sample_value
    assert get("sancodec_rpcs_total", {"method": "Encode", "code": "OK"}) == 2
    assert get("sancodec_rpcs_total", {"method": "Encode", "code": "NOT_FOUND"}) == 1
    assert get("sancodec_rpc_duration_seconds_count", {"method": "Encode"}) == 3
    assert get("sancodec_rpc_duration_seconds_sum", {"method": "Encode"}) == pytest.approx(42.01)
    # A 40 s stream lands in a finite bucket, not only in +Inf.
    assert get("sancodec_rpc_duration_seconds_bucket", {"method": "Encode", "le": "60.0"}) == 3
    assert get("sancodec_errors_total", {"method": "Encode", "code": "INVALID_ARGUMENT"}) == 2
    assert get("sancodec_errors_total", {"method": "Encode", "code": "NOT_FOUND"}) == 1
    assert get("sancodec_errors_total", {"method": "Encode", "code": "OK"}) is None


def test_gauges_follow_streams_queue_and_readiness(
    tele: Telemetry, registry: CollectorRegistry
) -> None:
    get = registry.get_sample_value
    assert get("sancodec_ready") == 0
    assert get("sancodec_batch_queue_depth") == 0
    tele.stream_started("Encode")
    tele.stream_started("Encode")
    tele.stream_started("Decode")
    tele.stream_ended("Encode")
    assert get("sancodec_active_streams", {"method": "Encode"}) == 1
    assert get("sancodec_active_streams", {"method": "Decode"}) == 1
    tele.stream_ended("Encode")
    assert get("sancodec_active_streams", {"method": "Encode"}) == 0
    tele.set_queue_depth(17)
    assert get("sancodec_batch_queue_depth") == 17
    tele.set_ready(True)
    assert get("sancodec_ready") == 1
    tele.set_ready(False)
    assert get("sancodec_ready") == 0


def test_batch_sizes(tele: Telemetry, registry: CollectorRegistry) -> None:
    for size in (1, 3, 64):
        tele.observe_batch(size)
    get = registry.get_sample_value
    assert get("sancodec_batch_size_count") == 3
    assert get("sancodec_batch_size_sum") == 68
    assert get("sancodec_batch_size_bucket", {"le": "1.0"}) == 1
    assert get("sancodec_batch_size_bucket", {"le": "4.0"}) == 2
    assert get("sancodec_batch_size_bucket", {"le": "1024.0"}) == 3


def test_set_models_replaces_the_loaded_set(tele: Telemetry, registry: CollectorRegistry) -> None:
    def loaded(model: str, version: str, provider: str) -> float | None:
        labels = {"model": model, "version": version, "provider": provider}
        return registry.get_sample_value("sancodec_model_loaded", labels)

    tele.set_models([("ecg", "1", "CPUExecutionProvider"), ("ppg", "1", "CPUExecutionProvider")])
    assert loaded("ecg", "1", "CPUExecutionProvider") == 1
    assert loaded("ppg", "1", "CPUExecutionProvider") == 1
    tele.set_models([("ecg", "2", "CUDAExecutionProvider"), ("ppg", "1", "CPUExecutionProvider")])
    assert loaded("ecg", "1", "CPUExecutionProvider") is None
    assert loaded("ecg", "2", "CUDAExecutionProvider") == 1
    assert loaded("ppg", "1", "CPUExecutionProvider") == 1
    tele.set_models([])
    assert loaded("ppg", "1", "CPUExecutionProvider") is None


def test_build_info(registry: CollectorRegistry) -> None:
    Telemetry(registry, build_version="1.2.3")
    samples = [
        s
        for metric in registry.collect()
        if metric.name == "sancodec_build"
        for s in metric.samples
    ]
    assert len(samples) == 1
    assert samples[0].name == "sancodec_build_info"
    assert samples[0].labels["version"] == "1.2.3"
    assert samples[0].labels["python"].count(".") == 2


def test_default_registry_is_private_with_process_metrics() -> None:
    first, second = Telemetry(), Telemetry()  # a shared global registry would raise here
    assert first.registry is not second.registry
    first.stream_started("Encode")
    assert second.registry.get_sample_value("sancodec_active_streams", {"method": "Encode"}) is None
    assert b"process_cpu_seconds_total" in first.exposition()


def test_buckets_span_the_documented_ranges() -> None:
    spans = {
        telemetry.COMPRESSION_RATIO_BUCKETS: (1, 1000),
        telemetry.BYTES_PER_SAMPLE_BUCKETS: (0.01 / 8, 2),
        telemetry.LOSS_BUCKETS: (0.01, 4),
        telemetry.PRDN_PERCENT_BUCKETS: (0.1, 200),
        telemetry.LATENCY_SECONDS_BUCKETS: (0.0005, 10),
        telemetry.BATCH_SIZE_BUCKETS: (1, 1024),
        telemetry.BEAT_AGREEMENT_BUCKETS: (0.25, 1.0),
    }
    for buckets, (low, high) in spans.items():
        assert (buckets[0], buckets[-1]) == (low, high)
        assert list(buckets) == sorted(set(buckets))
    powers_of_two = tuple(2.0**k for k in range(11))
    assert powers_of_two == telemetry.BATCH_SIZE_BUCKETS


def test_promtool_finds_no_problems_in_the_exposition(tele: Telemetry, promtool: str) -> None:
    _populate(tele)
    payload = tele.exposition()
    assert b'sancodec_blocks_total{model="ecg",version="1"} 2.0' in payload
    done = _promtool_check(promtool, payload)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""
    assert done.stderr.strip() == ""


def test_promtool_check_catches_a_bad_name(registry: CollectorRegistry, promtool: str) -> None:
    # Proves the lint above is live: a gauge named like a counter must be reported.
    Gauge("sancodec_wrong_total", "A gauge named like a counter.", registry=registry).set(1)
    done = _promtool_check(promtool, Telemetry(registry).exposition())
    assert done.returncode != 0
    assert "sancodec_wrong_total" in done.stdout + done.stderr


def test_serve_exposes_metrics_over_http(tele: Telemetry) -> None:
    _block(tele)
    port = tele.serve(0, host="127.0.0.1")
    assert port > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    assert response.status == 200
    assert 'sancodec_blocks_total{model="ecg",version="1"} 1.0' in body
    tele.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
