"""Who may open a stream and how long it may sit idle: limits per server and per peer, health
watches, load shedding by encoder queue delay, the in-flight sample budget, and the drain."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from sancodec.errors import (
    DeadlineExceededError,
    OverloadedError,
    SancodecError,
    UnavailableError,
)
from server.codec_threads import DelayGauge
from server.config import ServerConfig

__all__ = ["Admission", "ByteBudget", "Pacer", "peer_host", "working_bytes"]

RETRY_AFTER_S = 1.0  # what a refused client is told to wait
_END = object()
WORKING_COPIES = 3  # float64 copies of a chunk while it is coded: unpacked, scaled, buffered


def working_bytes(chunk_bytes: int, itemsize: int) -> int:
    """What coding a chunk of raw samples holds in memory: a few float64 copies of it."""
    return chunk_bytes // itemsize * 8 * WORKING_COPIES


def peer_host(peer: str) -> str:
    """The client's address without its port: "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7"."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


class Admission:
    """Counts streams (health watches apart) by peer; `admit` raises instead of admitting."""

    def __init__(self, settings: ServerConfig, *queues_s: Callable[[], float]) -> None:
        """`queues_s`: how long new work would wait in each queue (encoder, codec threads);
        `gauge` watches them and the event loop (started once the server is ready)."""
        self.settings = settings
        self.gauge = DelayGauge(*queues_s)
        self.ready = False
        self.draining = False
        self.active = 0
        self.watches = 0
        self._by_peer: Counter[str] = Counter()
        self.drain = asyncio.Event()  # set: running streams flush their blocks and end

    def _check_open(self) -> None:
        if self.draining:
            raise UnavailableError("the server is shutting down; reconnect to another instance")
        if not self.ready:
            raise UnavailableError("the server is still loading its models")

    def admit(self, peer: str) -> None:
        """Count a new codec stream from `peer`, or raise why it may not start."""
        self._check_open()
        s, host = self.settings, peer_host(peer)
        if self.active >= s.max_streams:
            raise OverloadedError(
                f"the server holds its limit of {s.max_streams} streams", RETRY_AFTER_S
            )
        if self._by_peer[host] >= s.max_streams_per_peer:
            raise OverloadedError(
                f"this client holds its limit of {s.max_streams_per_peer} streams", RETRY_AFTER_S
            )
        delay_ms = self.gauge.delay_s * 1000
        if delay_ms > s.shed_delay_ms:
            raise OverloadedError(
                f"the server is {delay_ms:.0f} ms behind (limit {s.shed_delay_ms:g} ms): it takes "
                "no new streams, so running ones keep their latency",
                RETRY_AFTER_S,
            )
        self.active += 1
        self._by_peer[host] += 1

    def release(self, peer: str) -> None:
        self.active -= 1
        self._release_peer(peer)

    def admit_watch(self, peer: str) -> None:
        """Health watches have their own limit and count against the peer's streams too."""
        s, host = self.settings, peer_host(peer)
        if self.watches >= s.max_health_watches or self._by_peer[host] >= s.max_streams_per_peer:
            raise OverloadedError(
                f"the server holds its limit of {s.max_health_watches} health watches "
                "(or this client its stream limit); poll Check instead",
                RETRY_AFTER_S,
            )
        self.watches += 1
        self._by_peer[host] += 1

    def release_watch(self, peer: str) -> None:
        self.watches -= 1
        self._release_peer(peer)

    def _release_peer(self, peer: str) -> None:
        host = peer_host(peer)
        self._by_peer[host] -= 1
        if self._by_peer[host] <= 0:
            del self._by_peer[host]


class ByteBudget:
    """Bytes of received samples not yet coded, all streams together; a stream waits for room
    (so gRPC flow control holds its sender back) and is refused after `wait_s`."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.limit, self.wait_s, self.used = limit, wait_s, 0
        self._room = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        async with self._room:
            try:
                await asyncio.wait_for(
                    self._room.wait_for(lambda: self.used + size <= self.limit), self.wait_s
                )
            except TimeoutError:
                raise OverloadedError(
                    f"the server holds {self.used} bytes of samples not yet coded; "
                    "send more slowly",
                    RETRY_AFTER_S,
                ) from None
            self.used += size

    async def release(self, size: int) -> None:
        async with self._room:
            self.used -= size
            self._room.notify_all()


class Pacer:
    """A stream's messages, each within its timeout. When the server drains, or the stream falls
    idle after its config, iteration just ends, so the stream flushes what it holds; `ended_by`
    then says why it must end (a stream silent from the start is refused at once)."""

    def __init__(self, requests: AsyncIterator[Any], settings: ServerConfig, drain: asyncio.Event):
        self._requests, self._drain = requests, drain
        self._first_s, self._idle_s = settings.config_timeout_s, settings.idle_timeout_s
        self.count = 0
        self.ended_by: SancodecError | None = None
        self._drained: asyncio.Future[Any] | None = None

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            while True:
                message = await self._next()
                if message is _END:
                    return
                self.count += 1
                yield message
        finally:
            if self._drained is not None:
                self._drained.cancel()

    async def _next(self) -> Any:
        timeout = self._first_s if self.count == 0 else self._idle_s
        if self._drained is None:  # one watcher per stream, not one per message
            self._drained = asyncio.ensure_future(self._drain.wait())
        drained = self._drained
        read = asyncio.ensure_future(anext(self._requests, _END))
        done, _ = await asyncio.wait(
            (read, drained), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if read in done:
            return read.result()
        read.cancel()
        if drained in done:
            self.ended_by = UnavailableError(
                f"the server is shutting down: the stream was flushed after {self.count} "
                "messages and ended; continue on another instance"
            )
        elif self.count == 0:
            raise DeadlineExceededError(
                f"the stream sent no config within {timeout:g} s of opening; it is closed"
            )
        else:
            self.ended_by = DeadlineExceededError(
                f"the stream sent nothing for {timeout:g} s (the idle timeout): what it sent "
                "was flushed, and it is closed"
            )
        return _END
