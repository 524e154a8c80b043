"""The threads that do a stream's codec work off the event loop, shared fairly between streams,
and how long work waits there."""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["CodecThreads", "DelayGauge"]

T = TypeVar("T")
BACKGROUND_WAIT_S = 0.5  # background work starts beside live work once it has waited this long


@dataclass(order=True)
class _Job:
    tag: float  # the owner's virtual start time: jobs start lowest first
    seq: int
    owner: object | None = field(compare=False)
    background: bool = field(compare=False)
    call: Callable[[], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    queued: float = field(compare=False)


class CodecThreads:
    """A small thread pool that shares its threads between owners (streams) by start-time fair
    queueing: each job is tagged with max(virtual time, its owner's last finish tag), a job's
    finish tag adds the thread seconds it took, and the lowest tag starts first. A stream that
    needs a few milliseconds a second starts ahead of one that has used far more; streams that
    use alike take turns. Background jobs (a stream uploading faster than real time: the service
    lets one such stream code at a time) yield to live work: in Python, a job beside another one
    halves its speed. `delay_s` is how long the oldest live job not yet started has waited."""

    PRUNE_AT = 4096  # owners remembered before the ones that are no longer ahead are forgotten

    def __init__(self, workers: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codec")
        self._workers = workers
        self._free = workers
        self._heap: list[_Job] = []  # live work waiting
        self._background: list[_Job] = []  # background work waiting
        self._live = 0  # live jobs on a thread now
        self._finish: dict[object, float] = {}  # owner: the finish tag of its last job
        self._virtual = 0.0  # the tag of the job started last
        self._ids = itertools.count()

    async def run(self, call: Callable[..., T], *args: Any, owner: object = None,
                  background: bool = False) -> T:  # fmt: skip
        """`call(*args)` on a thread, when the owner's turn comes (no owner: a one-job owner).
        Background work (a stream far ahead of real time) yields to the rest."""
        return await self._submit(call, args, owner, background)

    def run_spare(self, call: Callable[..., T], *args: Any, owner: object = None,
                  start_within: float) -> asyncio.Future[T]:  # fmt: skip
        """Optional work: `call(*args)` queued at once as background work, its future; cancelled
        at once if the threads have no room for it now (`spare`), or when it has not started
        within `start_within` seconds (live work took the room back). Queued before this returns,
        so a second caller in the same turn of the loop finds no room."""
        if not self.spare:
            dropped: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            dropped.cancel()
            return dropped
        future = self._submit(call, args, owner, True)
        future.get_loop().call_later(start_within, self._drop_unstarted, future)
        return future

    def _drop_unstarted(self, future: asyncio.Future[Any]) -> None:
        if any(job.future is future for job in self._background):  # not started yet
            future.cancel()  # `_next` forgets it

    def _submit(self, call: Callable[..., T], args: tuple[Any, ...], owner: object,
                background: bool) -> asyncio.Future[T]:  # fmt: skip
        tag = max(self._virtual, self._finish.get(owner, 0.0) if owner is not None else 0.0)
        job = _Job(tag, next(self._ids), owner, background, lambda: call(*args),
                   asyncio.get_running_loop().create_future(), time.monotonic())  # fmt: skip
        heapq.heappush(self._background if background else self._heap, job)
        self._start()
        return job.future

    def _start(self) -> None:
        while self._free:
            job = self._next()
            if job is None:
                return
            self._free -= 1
            self._live += 0 if job.background else 1
            self._virtual = max(self._virtual, job.tag)
            loop = job.future.get_loop()
            ran = loop.run_in_executor(self._executor, _timed, job.call)
            ran.add_done_callback(functools.partial(self._done, job))

    def _next(self) -> _Job | None:
        """The next job to start: the lowest tag among live work; background work only when no
        live work waits, and beside running live work only once it has waited BACKGROUND_WAIT_S
        (so that it always moves)."""
        for heap in (self._heap, self._background):
            while heap and heap[0].future.done():  # its caller was cancelled while it waited
                heapq.heappop(heap)
        if self._heap:
            return heapq.heappop(self._heap)
        if not self._background:
            return None
        if self._live and time.monotonic() - self._background[0].queued < BACKGROUND_WAIT_S:
            return None
        return heapq.heappop(self._background)

    def _done(
        self, job: _Job, ran: asyncio.Future[tuple[float, BaseException | None, Any]]
    ) -> None:
        self._free += 1
        self._live -= 0 if job.background else 1
        if ran.cancelled() or ran.exception() is not None:  # the pool shut down under it
            job.future.cancel()
            return
        seconds, exc, result = ran.result()
        if not job.future.done():  # done: its caller was cancelled while it ran
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
        if job.owner is not None:
            self._finish[job.owner] = max(self._finish.get(job.owner, 0.0), job.tag + seconds)
        if len(self._finish) > self.PRUNE_AT:  # owners not ahead of virtual time start there anyway
            self._finish = {o: f for o, f in self._finish.items() if f > self._virtual}
        self._start()

    @property
    def spare(self) -> bool:
        """Room for optional work now: no live work waits, and no background work waits or runs
        (so optional work, one job at a time, takes only what live work leaves)."""
        background_running = self._workers - self._free - self._live
        return not self._heap and not self._background and background_running == 0

    def delay_s(self) -> float:
        waiting = [job.queued for job in self._heap if not job.future.done()]  # live work
        return time.monotonic() - min(waiting) if waiting else 0.0

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _timed(call: Callable[[], T]) -> tuple[float, BaseException | None, T | None]:
    """(thread CPU seconds, the exception raised or None, the result)."""
    started = time.thread_time()
    try:
        result, exc = call(), None
    except Exception as raised:  # handed to the caller's future
        result, exc = None, raised
    return time.thread_time() - started, exc, result


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
