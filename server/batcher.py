"""Dynamic batching: detection windows of every stream share ONNX Runtime calls, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sancodec.errors import OverloadedError, UnavailableError
from sancodec.streamcoder import Spikes, Window
from server.repository import LoadedModel
from server.telemetry import Telemetry

__all__ = ["Batcher"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Request:
    model: LoadedModel
    windows: list[Window]
    future: asyncio.Future[list[Spikes]]
    results: list[Spikes | None] = field(default_factory=list)
    taken: int = 0  # windows handed to a batch
    left: int = 0  # windows without spikes yet
    queued_at: float = field(default_factory=time.monotonic)


class Batcher:
    """`detect` queues a stream's windows; a worker gathers up to `max_batch` windows (waiting at
    most `max_wait_s` for company), runs one encoder call per (model, window length) in a thread,
    and hands each stream its spikes. More than `queue_limit` waiting windows is an overload."""

    def __init__(
        self, max_batch: int, max_wait_s: float, queue_limit: int, telemetry: Telemetry
    ) -> None:
        self.max_batch, self.max_wait_s, self.queue_limit = max_batch, max_wait_s, queue_limit
        self.telemetry = telemetry
        self._pending: list[_Request] = []
        self._queued = 0
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for request in self._pending:
            if not request.future.done():
                request.future.set_exception(UnavailableError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    def queue_delay_s(self) -> float:
        """How long the oldest waiting request has waited: the delay new work would add to."""
        if not self._pending:
            return 0.0
        return time.monotonic() - min(r.queued_at for r in self._pending)

    async def detect(self, model: LoadedModel, windows: list[Window]) -> list[Spikes]:
        if not windows:
            return []
        if self._task is None or self._task.done():
            raise UnavailableError("the encoder is not running")
        if self._queued + len(windows) > self.queue_limit:
            raise OverloadedError(
                f"the server is overloaded ({self._queued} windows waiting for the encoder); retry later"
            )
        future: asyncio.Future[list[Spikes]] = asyncio.get_running_loop().create_future()
        request = _Request(model, windows, future, results=[None] * len(windows), left=len(windows))
        self._pending.append(request)
        self._queued += len(windows)
        self.telemetry.set_queue_depth(self._queued)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            deadline = time.monotonic() + self.max_wait_s
            while self._queued < self.max_batch and time.monotonic() < deadline:
                await asyncio.sleep(min(self.max_wait_s, 0.0005))
            taken = self._take()
            if not self._pending:
                self._wake.clear()
            try:
                await self._execute(taken)
            except Exception:  # a request's future carries its error; the worker lives on
                log.exception("encoder batch failed")

    def _take(self) -> list[tuple[_Request, int]]:
        """Up to max_batch (request, window index) pairs, round-robin over the waiting requests
        (oldest first), so a stream sending large chunks does not delay real-time ones."""
        taken: list[tuple[_Request, int]] = []
        while self._pending and len(taken) < self.max_batch:
            for request in list(self._pending):
                if len(taken) == self.max_batch:
                    break
                taken.append((request, request.taken))
                request.taken += 1
                if request.taken == len(request.windows):
                    self._pending.remove(request)
        self._queued -= len(taken)
        self.telemetry.set_queue_depth(self._queued)
        return taken

    async def _execute(self, taken: list[tuple[_Request, int]]) -> None:
        groups: dict[tuple[str, str], list[tuple[_Request, int]]] = defaultdict(list)
        for request, index in taken:
            groups[request.model.key].append((request, index))
        loop = asyncio.get_running_loop()
        for members in groups.values():
            model = members[0][0].model
            self.telemetry.observe_batch(len(members))
            windows = [r.windows[i] for r, i in members]
            try:
                spikes = await loop.run_in_executor(self._executor, model.detect_windows, windows)
            except Exception as exc:
                for request, _ in members:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            for (request, index), found in zip(members, spikes, strict=True):
                request.results[index] = found
                request.left -= 1
                if request.left == 0 and not request.future.done():
                    request.future.set_result([s for s in request.results if s is not None])
