"""The threads that do a stream's codec work off the event loop, and how long work waits there."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["CodecThreads", "DelayGauge"]

T = TypeVar("T")


class CodecThreads:
    """A small thread pool; `delay_s` is how long its oldest not-yet-started job has waited."""

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codec")
        self._waiting: dict[int, float] = {}
        self._ids = itertools.count()

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        job = next(self._ids)
        self._waiting[job] = time.monotonic()

        def started() -> T:
            self._waiting.pop(job, None)
            return call(*args)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, started)
        finally:
            self._waiting.pop(job, None)

    def delay_s(self) -> float:
        waiting = list(self._waiting.values())
        return time.monotonic() - min(waiting) if waiting else 0.0

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class DelayGauge:
    """How far behind the server is: every 50 ms, the event loop's lateness in waking a sleeper
    or the longest wait in `queues` (whichever is more); `delay_s` is the median of the last
    second, so a slow moment does not count as overload but a sustained one does."""

    PERIOD_S = 0.05
    WINDOW = 20

    def __init__(self, *queues: Callable[[], float]) -> None:
        self._queues = queues
        self._samples: deque[float] = deque([0.0] * self.WINDOW, maxlen=self.WINDOW)
        self._task: asyncio.Task[None] | None = None

    @property
    def delay_s(self) -> float:
        return float(statistics.median(self._samples))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="delay-gauge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.PERIOD_S)
            late = time.monotonic() - started - self.PERIOD_S
            self._samples.append(max([late, *(queue() for queue in self._queues)]))
