"""A real server on a loopback port, serving the shipped models, for the tests to talk to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from server.app import Runtime, create_server
from server.config import ServerConfig
from server.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[2]


class RunningServer:
    """create_server on its own event loop in a thread; `stop` drains it."""

    def __init__(self, config: ServerConfig) -> None:
        self.telemetry = Telemetry()
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)
        self.thread.start()
        self._started.wait(120)
        if self.error is not None:
            raise self.error

    def _run(self, config: ServerConfig) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.runtime: Runtime = self.loop.run_until_complete(
                create_server(config, self.telemetry)
            )
        except BaseException as exc:  # surfaced in the test thread
            self.error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.runtime.port}"

    def stop(self, grace_s: float = 0.0) -> None:
        asyncio.run_coroutine_threadsafe(self.runtime.stop(grace_s), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


BASE = ServerConfig(models=REPO / "models", host="127.0.0.1", port=0, metrics_port=-1)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = RunningServer(BASE)
    yield running
    running.stop()


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


def start(**changes: object) -> RunningServer:
    """A server of its own, for tests that change settings or stop it."""
    return RunningServer(replace(BASE, **changes))  # type: ignore[arg-type]
