"""examples/node: the grpc-js client, run against a real server, agrees with the Python side."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import wfdb
from server_harness import REPO, RunningServer, encode_requests, start

from sancodec import metrics
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2

EXAMPLE = REPO / "examples" / "node"
RECORD = REPO / "data" / "demo" / "mitdb100_excerpt"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    if not (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail(
            "examples/node has no node_modules: run `npm ci --prefix examples/node` (make test does)"
        )
    running = start()
    yield running
    running.stop()


def _run(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(NODE), str(EXAMPLE / "roundtrip.js"), "--server", server.address, *args]
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def _python_roundtrip(server: RunningServer) -> tuple[float, float]:
    """The same record through the Python stubs: (bits per sample, PRDN in percent)."""
    record = wfdb.rdrecord(str(RECORD), physical=False)
    counts = record.d_signal.T.astype(np.int16)
    channels = [
        codec_pb2.SignalChannel(name=n, units="mV", adc_gain=200, adc_baseline=1024)
        for n in record.sig_name
    ]
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        responses = list(
            stub.Encode(
                encode_requests(counts, 4096, dtype=codes_pb2.SAMPLE_DTYPE_INT16, channels=channels)
            )
        )
        config = codec_pb2.DecodeConfig(
            model="ecg", channel_count=2, channels=responses[0].started.channels
        )
        blocks = [codec_pb2.DecodeRequest(block=r.block) for r in responses if r.HasField("block")]
        chunks = [
            r.chunk for r in stub.Decode(iter([codec_pb2.DecodeRequest(config=config), *blocks]))
        ]
    decoded = np.concatenate([np.frombuffer(c.samples, "<f4").reshape(-1, 2) for c in chunks]).T
    physical = (counts - 1024.0) / 200.0
    x = np.concatenate([row - row.mean() for row in physical])
    x_hat = np.concatenate(
        [d - row.mean() for d, row in zip(decoded.astype(np.float64), physical, strict=True)]
    )
    return 8 * responses[-1].summary.code_bytes / counts.size, metrics.prdn(x, x_hat)


def test_the_node_client_encodes_int16_and_reports_what_python_measures(
    server: RunningServer,
) -> None:
    done = _run(server, "--chunk-frames", "997")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "model ecg/1: 360 Hz, in mV" in out
    assert "2 channels x 43200 frames, int16 at 200 counts/mV, baseline 1024" in out
    assert "decoded units: mV, mV" in out
    bits = float(re.search(r"bits/sample: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    prdn = float(re.search(r"PRDN: ([\d.]+) %", out).group(1))  # type: ignore[union-attr]
    expected_bits, expected_prdn = _python_roundtrip(server)
    assert bits == pytest.approx(expected_bits, abs=1e-4)  # codes do not depend on chunking
    assert prdn == pytest.approx(expected_prdn, abs=1e-3)
    assert 0 < bits < 2
    assert 0 < prdn < 25


def test_the_node_client_reports_a_refusal_in_one_line(server: RunningServer) -> None:
    done = _run(server, "--model", "nope")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "roundtrip: no model named 'nope'; loaded models: ecg, ecg-lowrate, ecg-rhythm, eeg"
    )
