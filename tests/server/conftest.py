"""Fixtures: a real server on a loopback port serving the shipped models, and a channel to it."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from server_harness import BASE, RunningServer, start

__all__ = ["start"]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = RunningServer(BASE)
    yield running
    running.stop()


@pytest.fixture
def running() -> Iterator[list[RunningServer]]:
    """Servers a test starts; each is stopped at the end, whatever happened."""
    servers: list[RunningServer] = []
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch
