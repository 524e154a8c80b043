"""Fair admission and a clean drain: idle streams are closed, one client cannot take every slot,
health watches are capped, an overloaded encoder sheds new work, and a drain flushes streams."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_harness import BASE, encode_requests, start

from sancodec.errors import InvalidConfigError, OverloadedError
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2
from server.admission import Admission, ByteBudget, peer_host
from server.config import ServerConfig

CONFIG = codec_pb2.EncodeRequest(
    config=codec_pb2.EncodeConfig(
        model="ecg", sample_rate_hz=360.0, channel_count=1, dtype=codes_pb2.SAMPLE_DTYPE_FLOAT32
    )
)


def _samples(n: int) -> codec_pb2.EncodeRequest:
    values = np.sin(np.arange(n) / 9.0).astype("<f4")
    return codec_pb2.EncodeRequest(chunk=codec_pb2.SignalChunk(samples=values.tobytes()))


class Held:
    """An Encode stream that sends `first` messages, then nothing until released."""

    def __init__(self, channel: grpc.Channel, first: list[codec_pb2.EncodeRequest]) -> None:
        self.release = threading.Event()
        self.call = codec_pb2_grpc.CodecServiceStub(channel).Encode(
            self._requests(first), timeout=30
        )
        self.responses: list[codec_pb2.EncodeResponse] = []
        self.error: grpc.RpcError | None = None
        self.took_s = 0.0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _requests(self, first: list[codec_pb2.EncodeRequest]) -> Iterator[codec_pb2.EncodeRequest]:
        yield from first
        self.release.wait(30)

    def _read(self) -> None:
        started = time.monotonic()
        try:
            self.responses.extend(self.call)
        except grpc.RpcError as exc:
            self.error = exc
        self.took_s = time.monotonic() - started

    def wait(self, timeout_s: float) -> grpc.RpcError | None:
        self.thread.join(timeout_s)
        self.release.set()
        assert not self.thread.is_alive(), "the stream is still open"
        return self.error


def test_idle_streams_are_closed_with_a_clear_status() -> None:
    server = start(config_timeout_s=0.5, idle_timeout_s=1.0)
    try:
        with grpc.insecure_channel(server.address) as channel:
            silent, configured = Held(channel, []), Held(channel, [CONFIG])
            sent = Held(channel, [CONFIG, _samples(3000)])
            error = silent.wait(5)
            assert error is not None
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "sent no config within 0.5 s" in error.details()
            assert silent.took_s < 2.5
            error = configured.wait(5)
            assert error is not None
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert (
                "sent nothing for 1 s (the idle timeout): what it sent was flushed"
                in error.details()
            )
            assert configured.responses[0].WhichOneof("payload") == "started"
            error = sent.wait(5)
            assert error is not None
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            blocks = [r.block for r in sent.responses if r.WhichOneof("payload") == "block"]
            assert sum(b.sample_count for b in blocks) == 3000  # flushed before it was closed
    finally:
        server.stop()


def test_one_client_cannot_take_every_slot_and_is_told_when_to_retry() -> None:
    server = start(max_streams_per_peer=2)
    try:
        with grpc.insecure_channel(server.address) as channel:
            held = [Held(channel, [CONFIG]) for _ in range(2)]
            deadline = time.monotonic() + 5
            while not all(h.responses for h in held) and time.monotonic() < deadline:
                time.sleep(0.02)
            third = Held(channel, [CONFIG])
            error = third.wait(5)
            assert error is not None
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "this client holds its limit of 2 streams" in error.details()
            assert "retry in 1 s" in error.details()
            assert ("grpc-retry-pushback-ms", "1000") in (error.trailing_metadata() or ())
            for h in held:
                h.release.set()
                h.wait(10)
    finally:
        server.stop()


def test_health_watches_are_capped() -> None:
    server = start(max_health_watches=2)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=10) for _ in range(2)]
            for w in watches:
                assert next(w).status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as caught:
                next(stub.Watch(health_pb2.HealthCheckRequest(), timeout=10))
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            for w in watches:
                w.cancel()
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1
    finally:
        server.stop()


def test_new_streams_are_shed_when_the_server_falls_behind() -> None:
    async def run() -> None:
        delay = [0.0]
        admission = Admission(ServerConfig(shed_delay_ms=50.0), lambda: delay[0])
        admission.ready = True
        admission.gauge.start()
        admission.admit("ipv4:10.0.0.1:1000")
        delay[0] = 0.2  # a queue's oldest job has waited 200 ms: a moment is not overload
        await asyncio.sleep(0.2)
        admission.admit("ipv4:10.0.0.1:1001")
        await asyncio.sleep(1.0)  # a second of it is
        with pytest.raises(OverloadedError, match="200 ms behind") as caught:
            admission.admit("ipv4:10.0.0.2:1000")
        assert caught.value.retry_after_s == 1.0
        assert admission.active == 2
        await admission.gauge.stop()

    asyncio.run(run())
    assert peer_host("ipv6:[::1]:5000") == "ipv6:[::1]"


def test_the_in_flight_budget_holds_senders_back_then_refuses() -> None:
    async def run() -> None:
        budget = ByteBudget(100, wait_s=0.2)
        await budget.acquire(80)
        waiting = asyncio.ensure_future(budget.acquire(50))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # held back while the budget is full
        await budget.release(80)
        await waiting
        with pytest.raises(OverloadedError, match="not yet coded"):
            await budget.acquire(60)

    asyncio.run(run())


def test_a_drain_keeps_health_visible_and_flushes_running_streams(mitdb100: np.ndarray) -> None:
    server = start(grace_s=2.0)
    signal_ = (mitdb100[:3000] / 200.0)[None, :]  # a real recording, in mV
    first = list(encode_requests(signal_, 3000))  # config and one chunk; then silence
    with grpc.insecure_channel(server.address) as channel:
        stream = Held(channel, first)
        deadline = time.monotonic() + 10
        while len(stream.responses) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # started, and block 0 coded
        stopping = threading.Thread(target=server.stop, args=(2.0,))
        stopping.start()
        time.sleep(0.3)
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=1
        )
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING  # visible while draining
        error = stream.wait(10)
        stopping.join(10)
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in error.details()
    assert "flushed" in error.details()
    blocks = [r.block for r in stream.responses if r.WhichOneof("payload") == "block"]
    assert sum(b.sample_count for b in blocks) == 3000  # nothing accepted was lost
    assert stream.responses[-1].summary.sample_count == 3000


def test_the_token_comes_from_a_file_or_the_environment_never_a_flag(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    assert ServerConfig.from_args(["--token-file", str(secret)], {}).token == "s3cret"
    assert ServerConfig.from_env({"SANCODEC_TOKEN_FILE": str(secret)}).token == "s3cret"
    assert ServerConfig.from_env({"SANCODEC_TOKEN": "t"}).token == "t"
    with pytest.raises(InvalidConfigError, match="token-file"):
        ServerConfig.from_args(["--token", "s3cret"], {})
    with pytest.raises(InvalidConfigError, match="cannot read the token file"):
        ServerConfig.from_args(["--token-file", str(tmp_path / "missing")], {})
    assert BASE.token is None
