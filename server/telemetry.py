"""Prometheus telemetry of the server: block quality, throughput, RPCs, batching and readiness."""

from __future__ import annotations

import errno
import logging
import math
import platform
import socket
import threading
from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "BEAT_AGREEMENT_BUCKETS",
    "BYTES_PER_SAMPLE_BUCKETS",
    "COMPRESSION_RATIO_BUCKETS",
    "LATENCY_SECONDS_BUCKETS",
    "LOSS_BUCKETS",
    "PRDN_PERCENT_BUCKETS",
    "RPC_DURATION_SECONDS_BUCKETS",
    "Telemetry",
    "serve_metrics",
    "workers_registry",
]

logger = logging.getLogger(__name__)
NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, socket.EAI_ADDRFAMILY, socket.EAI_NONAME)

# Buckets, chosen per quantity so that every bucket separates values an operator would tell apart.
# Raw / encoded bytes: 1 (incompressible) to 1000, roughly log-spaced (1-1.5-2-3-5-7.5 steps).
COMPRESSION_RATIO_BUCKETS = (
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0,
    100.0, 150.0, 200.0, 300.0, 500.0, 1000.0,
)  # fmt: skip
# Encoded bytes / samples: the bits-per-sample range 0.01 (near-silence) to 16 (16-bit raw), in
# bytes, since Prometheus's base unit is the byte (promtool rejects "bits"); dashboards show x 8.
BYTES_PER_SAMPLE_BUCKETS = tuple(
    bits / 8
    for bits in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
)
# The paper's L~ = sum|x - x^| / sum|x| and phi = sqrt(CR^-2 + L~^2): ratios, 0.01 to 4
# (1 means the reconstruction is as far off as the signal is large).
LOSS_BUCKETS = (
    0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0,
)  # fmt: skip
# PRDN in percent, 0.1 to 200: ~2 % keeps an ECG diagnostic; 100 % is no better than the mean.
PRDN_PERCENT_BUCKETS = (
    0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0,
)  # fmt: skip
# Share of a block's beats that its reconstruction keeps: a 2048-sample ECG block at 360 Hz holds
# 5-15 beats, so one lost beat moves it to 0.8-0.93; 1.0 gets its own bucket.
BEAT_AGREEMENT_BUCKETS = (0.25, 0.5, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
# Per-block encode/decode latency: 0.5 ms (a warm GPU batch) to 10 s (a stalled queue).
LATENCY_SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# RPC duration: unary calls fall in the latency buckets; a streaming RPC lasts as long as its
# stream, hence the tail up to an hour.
RPC_DURATION_SECONDS_BUCKETS = (*LATENCY_SECONDS_BUCKETS, 30.0, 60.0, 300.0, 900.0, 3600.0)
# Windows per ONNX Runtime call: powers of two up to the largest batch a server would allow.
BATCH_SIZE_BUCKETS = tuple(float(2**k) for k in range(11))

_BLOCK = ("model", "version")


def _build_info(registry: CollectorRegistry) -> Info:
    return Info("sancodec_build", "Server build.", registry=registry)


def workers_registry(path: str, build_version: str = "0.1.0") -> CollectorRegistry:
    """The registry of a server with several workers: what every worker's metrics add up to
    (prometheus_client's MultiProcessCollector over the files in `path`), and the build. The
    process_* metrics of single processes are not in it: the multiprocess mode cannot merge them."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    _build_info(registry).info({"version": build_version, "python": platform.python_version()})
    return registry


def serve_metrics(registry: CollectorRegistry, port: int, host: str) -> tuple[WSGIServer, int]:
    """Serve `registry` as /metrics over HTTP on `host` ("::" is every interface, falling back to
    every IPv4 one on a kernel without IPv6) and `port` (0 picks one); log and return the port."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if host != "::" or exc.errno not in NO_IPV6:
            raise
        server, _thread = start_http_server(port, addr="0.0.0.0", registry=registry)
    bound_host, bound = str(server.server_address[0]), int(server.server_port)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    logger.info("metrics on http://%s:%d/metrics", shown, bound)
    return server, bound


def _process_registry() -> CollectorRegistry:
    """A fresh registry with the standard process, platform and GC collectors on it."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class Telemetry:
    """Every Prometheus metric the server exports, on one registry.

    Labels are bounded: model, version, method (gRPC method name), code (gRPC status code
    name), and provider on the model-loaded gauge. Never a stream, client or patient.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, build_version: str = "0.1.0"
    ) -> None:
        self.registry = registry if registry is not None else _process_registry()
        self._loaded: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._http: WSGIServer | None = None
        self._build_quality_metrics()
        self._build_throughput_metrics()
        self._build_service_metrics()
        self._build.info({"version": build_version, "python": platform.python_version()})
        self._ready.set(0)
        self._queue_depth.set(0)

    def _histogram(self, name: str, doc: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(name, doc, _BLOCK, buckets=buckets, registry=self.registry)

    def _counter(self, name: str, doc: str, labels: Sequence[str] = _BLOCK) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _build_quality_metrics(self) -> None:
        h = self._histogram
        self._ratio = h(
            "sancodec_block_compression_ratio",
            "Raw bytes / encoded bytes of each encoded block.",
            COMPRESSION_RATIO_BUCKETS,
        )
        self._bytes_per_sample = h(
            "sancodec_block_bytes_per_sample",
            "Encoded bytes per sample of each encoded block (x 8 for bits per sample).",
            BYTES_PER_SAMPLE_BUCKETS,
        )
        self._loss = h(
            "sancodec_block_normalized_loss",
            "Normalized reconstruction loss L~ (a ratio) of each encoded block.",
            LOSS_BUCKETS,
        )
        self._prdn = h(
            "sancodec_block_prdn_percent",
            "Normalized percent RMS difference (PRDN) of each encoded block.",
            PRDN_PERCENT_BUCKETS,
        )
        self._flithos = h(
            "sancodec_block_flithos", "Flithos phi of each encoded block.", LOSS_BUCKETS
        )
        self._beats = h(
            "sancodec_block_beat_agreement_ratio",
            "Share of an ECG block's beats (QRS complexes found in the input) that its "
            "reconstruction keeps within 150 ms; blocks without beats and non-ECG models are left out.",
            BEAT_AGREEMENT_BUCKETS,
        )
        self._undefined = self._counter(
            "sancodec_block_quality_undefined_total",
            "Non-finite block figures (such as PRDN of a constant block), left out of histograms.",
        )

    def _build_throughput_metrics(self) -> None:
        c = self._counter
        self._latency = self._histogram(
            "sancodec_block_latency_seconds", "Time to encode a block.", LATENCY_SECONDS_BUCKETS
        )
        self._decode_latency = self._histogram(
            "sancodec_decode_block_latency_seconds",
            "Time to decode a block.",
            LATENCY_SECONDS_BUCKETS,
        )
        self._samples = c("sancodec_samples_total", "Samples encoded.")
        self._raw_bytes = c("sancodec_raw_bytes_total", "Raw bytes encoded, in the input dtype.")
        self._encoded_bytes = c("sancodec_encoded_bytes_total", "Bytes of code produced.")
        self._blocks = c("sancodec_blocks_total", "Blocks encoded.")
        self._checks = c(
            "sancodec_kernel_checks_total",
            "Checks of a stream's kernels by outcome: updated (new kernels sent in-band), kept, "
            "skipped (the codec threads had no room) or failed (logged); the last two keep the "
            "stream's kernels.",
            (*_BLOCK, "outcome"),
        )
        self._decoded_samples = c("sancodec_decoded_samples_total", "Samples decoded.")
        self._decoded_blocks = c("sancodec_decoded_blocks_total", "Blocks decoded.")

    def _build_service_metrics(self) -> None:
        r = self.registry
        self._rpc_duration = Histogram(
            "sancodec_rpc_duration_seconds",
            "Duration of finished RPCs, streams included.",
            ["method"],
            buckets=RPC_DURATION_SECONDS_BUCKETS,
            registry=r,
        )
        method_code = ("method", "code")
        self._rpcs = self._counter("sancodec_rpcs_total", "Finished RPCs.", method_code)
        self._errors = self._counter(
            "sancodec_errors_total", "Errors, final or in-band in one message.", method_code
        )
        # With several workers (prometheus_client's multiprocess mode), each gauge says how the
        # workers' values combine; one process ignores it.
        self._active_streams = Gauge(
            "sancodec_active_streams", "Streams open now.", ["method"], registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self._batch_size = Histogram(
            "sancodec_batch_size",
            "Windows per ONNX Runtime call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self._queue_depth = Gauge(
            "sancodec_batch_queue_depth", "Windows waiting to be batched.", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self._model_loaded = Gauge(
            "sancodec_model_loaded",
            "1 for each loaded model version, with its execution provider.",
            ["model", "version", "provider"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self._ready = Gauge(
            "sancodec_ready", "1 once models are loaded and warm (in every worker).", registry=r,
            multiprocess_mode="livemin",
        )  # fmt: skip
        self._build = _build_info(r)

    def observe_block(
        self,
        model: str,
        version: str,
        *,
        compression_ratio: float,
        bits_per_sample: float,
        normalized_loss: float,
        prdn_percent: float,
        flithos: float,
        samples: int,
        raw_bytes: int,
        encoded_bytes: int,
        latency_s: float,
        beat_agreement_ratio: float | None = None,
    ) -> None:
        """Record one encoded block; non-finite figures are counted as undefined, not observed.
        `beat_agreement_ratio` is None where it does not apply (no beats, not an ECG model)."""
        observations = (
            (self._ratio, compression_ratio),
            (self._bytes_per_sample, bits_per_sample / 8),
            (self._loss, normalized_loss),
            (self._prdn, prdn_percent),
            (self._flithos, flithos),
            (self._latency, latency_s),
        )
        undefined = 0
        for histogram, value in observations:
            if math.isfinite(value):
                histogram.labels(model, version).observe(value)
            else:
                undefined += 1
        if beat_agreement_ratio is not None:
            self._beats.labels(model, version).observe(beat_agreement_ratio)
        if undefined:
            self._undefined.labels(model, version).inc(undefined)
        self._samples.labels(model, version).inc(samples)
        self._raw_bytes.labels(model, version).inc(raw_bytes)
        self._encoded_bytes.labels(model, version).inc(encoded_bytes)
        self._blocks.labels(model, version).inc()

    def observe_check(self, model: str, version: str, outcome: str) -> None:
        """Record one check of a stream's kernels: "updated", "kept", "skipped" or "failed"."""
        self._checks.labels(model, version, outcome).inc()

    def observe_decoded_block(
        self, model: str, version: str, samples: int, latency_s: float
    ) -> None:
        """Record one decoded block."""
        self._decoded_samples.labels(model, version).inc(samples)
        self._decoded_blocks.labels(model, version).inc()
        if math.isfinite(latency_s):
            self._decode_latency.labels(model, version).observe(latency_s)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """Record a finished RPC with its final gRPC status code name ("OK", "NOT_FOUND", ...)."""
        self._rpc_duration.labels(method).observe(seconds)
        self._rpcs.labels(method, code).inc()

    def observe_error(self, method: str, code: str) -> None:
        """Count an error, whether it ended the RPC or was reported in-band in one message."""
        self._errors.labels(method, code).inc()

    def stream_started(self, method: str) -> None:
        self._active_streams.labels(method).inc()

    def stream_ended(self, method: str) -> None:
        self._active_streams.labels(method).dec()

    def observe_batch(self, size: int) -> None:
        """Record the number of windows sent to ONNX Runtime in one call."""
        self._batch_size.observe(size)

    def set_queue_depth(self, depth: int) -> None:
        self._queue_depth.set(depth)

    def set_models(self, models: Sequence[tuple[str, str, str]]) -> None:
        """Mark these (name, version, execution provider) as loaded and no others."""
        current = set(models)
        with self._lock:
            # Set the new ones before removing the stale ones, so no scrape sees an empty gauge.
            for labels in current:
                self._model_loaded.labels(*labels).set(1)
            for labels in self._loaded - current:
                self._model_loaded.remove(*labels)
            self._loaded = current
        logger.info("telemetry: %d model version(s) loaded", len(current))

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def serve(self, port: int, host: str) -> int:
        """Serve /metrics over HTTP on `host` ("::" or "0.0.0.0" is every interface) and its own
        port (0 picks a free one); return the bound port."""
        if self._http is not None:
            raise RuntimeError("telemetry is already being served")
        self._http, bound = serve_metrics(self.registry, port, host)
        return bound

    def close(self) -> None:
        """Stop the HTTP exposition, if serving; safe to call more than once."""
        server, self._http = self._http, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format, as a scrape would see it."""
        return generate_latest(self.registry)
