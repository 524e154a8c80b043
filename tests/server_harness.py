"""A real server on a loopback port (its own event loop, in a thread), and request builders."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from sancodec.samples import SampleDtype, pack_samples
from sancodec.v1 import codec_pb2, codes_pb2
from server.app import Runtime, create_server
from server.config import ServerConfig
from server.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[1]


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


def free_port() -> int:
    """A loopback port free now (for a server started in another process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BASE = ServerConfig(models=REPO / "models", host="127.0.0.1", port=0, metrics_port=-1)


def start(**changes: object) -> RunningServer:
    """A server of its own, for tests that change settings or stop it."""
    return RunningServer(replace(BASE, **changes))  # type: ignore[arg-type]


def encode_requests(
    signal: np.ndarray, chunk: int, dtype: int = codes_pb2.SAMPLE_DTYPE_FLOAT32, **config: object
) -> Iterator[codec_pb2.EncodeRequest]:
    """A config for the shipped `ecg` model (unless overridden), then chunks of `chunk` frames."""
    settings = {
        "model": "ecg",
        "sample_rate_hz": 360.0,
        "channel_count": signal.shape[0],
        "dtype": dtype,
    } | config
    yield codec_pb2.EncodeRequest(config=codec_pb2.EncodeConfig(**settings))  # type: ignore[arg-type]
    kind = SampleDtype.FLOAT32 if dtype == codes_pb2.SAMPLE_DTYPE_FLOAT32 else SampleDtype.INT16
    for lo in range(0, signal.shape[1], chunk):
        yield codec_pb2.EncodeRequest(
            chunk=codec_pb2.SignalChunk(samples=pack_samples(signal[:, lo : lo + chunk], kind))
        )
