"""Build and run the gRPC server: `sancodec-server --models DIR --port N --metrics-port N`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from sancodec.errors import InvalidConfigError
from sancodec.v1 import codec_pb2
from server.admission import Admission
from server.batcher import Batcher
from server.codec_threads import CodecThreads
from server.config import ServerConfig, check_config
from server.health import Health
from server.reflection import enable_reflection
from server.repository import ModelRepository
from server.service import CodecService
from server.telemetry import Telemetry
from server.wire import register

Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ["Runtime", "create_server", "serve"]

log = logging.getLogger(__name__)

SERVICE = codec_pb2.DESCRIPTOR.services_by_name["CodecService"].full_name
HEALTH_PREFIX = "/grpc.health.v1.Health/"
FLUSH_S = 2.0  # of the grace period, kept for flushing streams that are still running


class TokenAuth(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every call but health needs `authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(given).encode(), self._expected):
            return handler
        return _deny(handler)


def _deny(handler: Any) -> Any:
    message = "missing or wrong bearer token (metadata 'authorization: Bearer <token>')"

    async def unary(request: Any, context: Context) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    kind = (handler.request_streaming, handler.response_streaming)
    build = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return build(streaming if kind[1] else unary)


@dataclass(eq=False)
class Runtime:
    server: grpc.aio.Server
    port: int
    service: CodecService
    health: Health
    batcher: Batcher
    telemetry: Telemetry
    repository: ModelRepository

    async def stop(self, grace_s: float) -> None:
        """Drain: health NOT_SERVING (and still answering), refuse new streams, let running ones
        finish for most of the grace; then the rest flush their blocks and are told why."""
        admission = self.service.admission
        admission.draining = True
        self.telemetry.set_ready(False)
        for name in ("", SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        deadline = time.monotonic() + grace_s
        await _until(lambda: admission.active == 0, grace_s - min(FLUSH_S, grace_s / 2))
        admission.drain.set()  # what still runs flushes and ends with UNAVAILABLE
        await _until(lambda: admission.active == 0, deadline - time.monotonic())
        await self.server.stop(max(0.0, deadline - time.monotonic()))
        await self.batcher.stop()
        await admission.gauge.stop()
        self.service.codec_pool.shutdown()


async def _until(done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _options(config: ServerConfig, shared_port: bool) -> list[tuple[str, int]]:
    return [
        # only the workers of one server share a port: a second server on it fails to start
        ("grpc.so_reuseport", int(shared_port)),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.max_connection_age_ms", int(config.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(config.grace_s * 1000)),
        # bounded buffering: a fixed per-stream window (no BDP growth), a cap on streams per
        # connection and on calls in all; what a sender has not yet been granted stays with it
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", config.flow_window_bytes),
        # beyond the per-peer limit, so the service (not a silent HTTP/2 queue) refuses
        ("grpc.max_concurrent_streams", min(config.max_streams, config.max_streams_per_peer) + 16),
    ]


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """The port bound; 0 where the address cannot be bound (in use, say)."""
    try:
        if credentials is None:
            return int(server.add_insecure_port(address))
        return int(server.add_secure_port(address, credentials))
    except RuntimeError:  # grpcio's "Failed to bind to address"
        return 0


async def create_server(
    config: ServerConfig, telemetry: Telemetry | None = None, shared_port: bool = False
) -> Runtime:
    """Start a server on `config.port` (0 picks one), then load and warm up the models; it
    reports SERVING only once they are. Raises InvalidConfigError when no model loads."""
    credentials = check_config(config)  # a missing file fails here, before anything starts
    telemetry = telemetry or Telemetry()
    repository = ModelRepository(config.models, config.providers, config.threads)
    batcher = Batcher(config.max_batch, config.max_wait_ms / 1000, config.queue_windows, telemetry)
    threads = CodecThreads(workers=2)
    admission = Admission(config, batcher.queue_delay_s, threads.delay_s)
    service = CodecService(repository, config, batcher, telemetry, admission, threads)
    interceptors = [TokenAuth(config.token)] if config.token else []
    calls = config.max_streams + config.max_health_watches + 64  # and a few unary calls
    server = grpc.aio.server(
        options=_options(config, shared_port),
        interceptors=interceptors,
        maximum_concurrent_rpcs=calls,
    )
    register(server, service, codec_pb2.DESCRIPTOR.services_by_name["CodecService"])
    health = Health(admission)
    register(server, health, health_pb2.DESCRIPTOR.services_by_name["Health"])
    enable_reflection(server, (SERVICE, "grpc.health.v1.Health"))
    for name in ("", SERVICE):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    port = _bind(server, f"{config.host}:{config.port}", credentials)
    if port == 0:
        raise InvalidConfigError(f"cannot listen on {config.host}:{config.port}")
    await server.start()
    batcher.start()
    await asyncio.get_running_loop().run_in_executor(None, repository.load)
    if not repository.models():
        await server.stop(0)
        await batcher.stop()
        await admission.gauge.stop()
        raise InvalidConfigError(
            f"no model could be loaded from {config.models}: {'; '.join(repository.errors) or 'it is empty'}"
        )
    telemetry.set_models([(*m.key, m.provider) for m in repository.models()])
    admission.gauge.start()  # after loading, whose work would read as overload
    admission.ready = True
    telemetry.set_ready(True)
    for name in ("", SERVICE):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Runtime(server, port, service, health, batcher, telemetry, repository)


async def serve(
    config: ServerConfig, ready: Callable[[], None] | None = None, shared_port: bool = False
) -> None:
    """Run until SIGTERM or SIGINT, then drain within the grace period; `ready` is called once
    the models are loaded and the server reports SERVING. `shared_port`: one of several workers
    on the port (server/workers.py)."""
    telemetry = Telemetry()
    if config.metrics_port >= 0:  # logs the address it bound
        telemetry.serve(config.metrics_port, host=config.metrics_address)
    runtime = await create_server(config, telemetry, shared_port)
    for model in runtime.repository.models():
        log.info("serving %s/%s (%s)", *model.key, model.provider)
    log.info(
        "listening on %s:%d%s", config.host, runtime.port, " with TLS" if config.tls_cert else ""
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready()
    await stop.wait()
    log.info("draining (grace %.1f s)", config.grace_s)
    await runtime.stop(config.grace_s)
    log.info("stopped")
