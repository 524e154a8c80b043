"""Several cores: `python -m server --workers 2` on one port (streams land on both workers and code
as one worker does; one /metrics adds them up; SIGTERM drains both), a client spreading calls
round robin, and a client's cancel counted as CANCELLED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_harness import REPO, RunningServer, encode_requests, free_port, start

from client.codec import CodecClient
from sancodec.v1 import codec_pb2, codec_pb2_grpc
from server.workers import available_cores

STREAMS = 16  # on their own connections: all on one of two workers has odds 2 / 2**16


@pytest.fixture(scope="module")
def ecg(mitdb100: np.ndarray) -> np.ndarray:
    """MIT-BIH 100 MLII, 20000 samples in mV, as one channel: (1, n); five 4096-sample blocks."""
    return (mitdb100 / 200.0)[None, :]


class Workers:
    """`python -m server --workers 2` on loopback, with its log in a file."""

    def __init__(self, log: Path, grace_s: float = 10.0) -> None:
        self.port, self.metrics_port, self.log = free_port(), free_port(), log
        command = [sys.executable, "-m", "server", "--models", str(REPO / "models"),
                   "--host", "127.0.0.1", "--port", str(self.port), "--metrics-port",
                   str(self.metrics_port), "--workers", "2", "--grace-s", str(grace_s)]  # fmt: skip
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
                stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while "with 2 workers" not in log.read_text():
            assert self.process.poll() is None, f"the server exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the workers never started:\n{log.read_text()}"
            time.sleep(0.1)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    running = Workers(tmp_path_factory.mktemp("workers") / "server.log")
    yield running
    running.stop()


# gRPC shares one connection among a process's channels to one address, unless told not to.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def _encode(address: str, signal_: np.ndarray) -> tuple[str, list[bytes]]:
    """One stream on its own connection: the worker that coded it, and its blocks' bytes. With
    the model's kernels: a server that is busy skips a check of a stream's own kernels (the
    stream keeps its kernels), so with 16 streams at once adapted codes depend on the load."""
    with grpc.insecure_channel(address, options=OWN_CONNECTION) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        requests = encode_requests(signal_, 4000, fixed_kernels=True)
        responses = list(stub.Encode(requests, timeout=60))
    worker = responses[0].started.worker
    return worker, [r.block.SerializeToString() for r in responses if r.HasField("block")]


def test_streams_land_on_both_workers_and_code_as_one_worker(workers: Workers, server: RunningServer, ecg: np.ndarray) -> None:  # fmt: skip
    _, alone = _encode(server.address, ecg)
    found: list[tuple[str, list[bytes]]] = []
    threads = [
        threading.Thread(target=lambda: found.append(_encode(workers.address, ecg)))
        for _ in range(STREAMS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(found) == STREAMS
    assert len({worker for worker, _ in found}) == 2, "every stream landed on one worker"
    assert all(blocks == alone for _, blocks in found)
    # One scrape of the parent adds both workers up.
    metrics = workers.scrape()
    encode_ok = (("code", "OK"), ("method", "Encode"))
    assert metrics["sancodec_rpcs_total", encode_ok] == STREAMS
    ecg_labels = (("model", "ecg"), ("version", "1"))
    assert metrics["sancodec_blocks_total", ecg_labels] == STREAMS * len(alone)
    assert metrics["sancodec_samples_total", ecg_labels] == STREAMS * ecg.size
    assert metrics["sancodec_ready", ()] == 1
    assert metrics["sancodec_active_streams", (("method", "Encode"),)] == 0


def test_sigterm_drains_every_worker(tmp_path: Path, ecg: np.ndarray) -> None:
    running = Workers(tmp_path / "server.log", grace_s=15.0)
    found: list[tuple[str, list[bytes]]] = []

    def slow() -> Iterator[codec_pb2.EncodeRequest]:
        for i, request in enumerate(encode_requests(ecg, 2000)):
            yield request
            if i == 1:
                sent.set()
            time.sleep(0.1)  # ten chunks: about a second

    def stream() -> None:
        with grpc.insecure_channel(running.address, options=OWN_CONNECTION) as channel:
            responses = list(codec_pb2_grpc.CodecServiceStub(channel).Encode(slow(), timeout=60))
        found.append((responses[0].started.worker, [r.block for r in responses if r.HasField("block")]))  # fmt: skip

    sent = threading.Event()
    threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
    for t in threads:
        t.start()
    assert sent.wait(30)
    time.sleep(0.3)
    assert running.stop() == 0
    for t in threads:
        t.join(30)
    log = running.log.read_text()
    assert len(found) == STREAMS, log  # every stream ran to its end, none was cut
    assert len({worker for worker, _ in found}) == 2, "every stream landed on one worker"
    assert all(sum(b.sample_count for b in blocks) == ecg.shape[1] for _, blocks in found)
    assert log.count("server.app: stopped") == 2, log
    assert "Traceback" not in log


def test_round_robin_spreads_calls_over_every_address(running: list[RunningServer]) -> None:
    first, second = start(), start()
    running.extend([first, second])
    target = f"ipv4:127.0.0.1:{first.runtime.port},127.0.0.1:{second.runtime.port}"

    def calls(server: RunningServer) -> float:
        lines = server.telemetry.exposition().decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith('sancodec_rpcs_total{') and 'method="ListModels"' in line)  # fmt: skip

    with CodecClient(target, round_robin=True) as client:
        client.models()  # round robin uses the addresses it has connected to, so connect first
        time.sleep(1.0)
        for _ in range(8):
            client.models()
    assert calls(first) + calls(second) == 9
    assert min(calls(first), calls(second)) >= 4


def test_a_cancelled_stream_is_counted_as_cancelled(running: list[RunningServer], ecg: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    own = start()
    running.append(own)
    release = threading.Event()

    def requests() -> Iterator[codec_pb2.EncodeRequest]:
        it = encode_requests(ecg, 2000)
        yield next(it)
        yield next(it)
        release.wait(30)

    with grpc.insecure_channel(own.address) as channel:
        call = codec_pb2_grpc.CodecServiceStub(channel).Encode(requests(), timeout=60)
        assert next(call).HasField("started")
        call.cancel()
        release.set()
        with pytest.raises(grpc.RpcError) as raised:
            list(call)
    assert raised.value.code() == grpc.StatusCode.CANCELLED
    deadline = time.monotonic() + 10
    text = ""
    while 'sancodec_rpcs_total{code="CANCELLED",method="Encode"} 1.0' not in text:
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
        text = own.telemetry.exposition().decode()
    assert "INTERNAL" not in text
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]


def test_the_default_worker_count_follows_the_cpu_limit(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    affinity = len(os.sched_getaffinity(0))
    cpu_max.write_text("max 100000\n")
    assert available_cores(cpu_max) == affinity
    cpu_max.write_text("150000 100000\n")  # a limit of 1.5 cores: one worker
    assert available_cores(cpu_max) == 1
    cpu_max.write_text(f"{100000 * (affinity + 4)} 100000\n")  # the affinity bounds it too
    assert available_cores(cpu_max) == affinity
    assert available_cores(tmp_path / "absent") == affinity


def test_workers_leave_when_their_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL to the parent: its workers drain and exit, rather than keep the port."""
    running = Workers(tmp_path / "server.log", grace_s=1.0)
    pid = running.process.pid
    # the two workers, and multiprocessing's resource tracker
    workers = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    assert len(workers) >= 2
    running.process.kill()
    running.process.wait(10)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{c}").exists() and "Z" not in _state(c) for c in workers):
        assert time.monotonic() < deadline, running.log.read_text()
        time.sleep(0.2)
    assert "parent process" in running.log.read_text()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_a_taken_port_does_not_start(running: list[RunningServer], workers: str) -> None:  # fmt: skip
    """Only one server's workers share a port: another server there fails with one line."""
    first = start()
    running.append(first)
    done = subprocess.run(
        [sys.executable, "-m", "server", "--models", str(REPO / "models"), "--host", "127.0.0.1",
         "--port", str(first.runtime.port), "--metrics-port", "-1", "--workers", workers],
        cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{first.runtime.port}" in done.stderr
    assert "Traceback" not in done.stderr
