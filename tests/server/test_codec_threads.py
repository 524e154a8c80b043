"""The codec thread pool: fair turns between streams, background work yielding to live work,
errors and cancellation handed to the caller. Real threads; jobs are held by events, not timed."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from server import codec_threads
from server.codec_threads import CodecThreads


def _burn(seconds: float) -> None:
    """Use this much CPU on the calling thread (the pool charges thread CPU time)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _held(
    pool: CodecThreads, started: list[str], **kwargs: object
) -> tuple[threading.Event, asyncio.Future[None]]:
    """A job that occupies a thread until the returned event is set; and the job."""
    release, running = threading.Event(), threading.Event()

    def hold() -> None:
        started.append("held")
        running.set()
        release.wait(10)

    job = asyncio.ensure_future(pool.run(hold, **kwargs))
    while not running.is_set():
        await asyncio.sleep(0.001)
    return release, job


def test_a_stream_that_used_little_goes_before_one_that_used_much() -> None:
    async def main() -> list[str]:
        pool, started = CodecThreads(workers=1), []
        heavy, light = object(), object()
        await pool.run(_burn, 0.05, owner=heavy)  # the heavy stream has used 50 ms
        release, _ = await _held(pool, started)
        jobs = [pool.run(started.append, "heavy", owner=heavy),  # queued first
                pool.run(started.append, "light", owner=light)]  # fmt: skip
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0.01)  # both are waiting for the one thread
        release.set()
        await asyncio.gather(*tasks)
        pool.shutdown()
        return started

    assert asyncio.run(main()) == ["held", "light", "heavy"]


def test_background_work_waits_while_live_work_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec_threads, "BACKGROUND_WAIT_S", 60.0)

    async def main() -> tuple[list[str], list[str]]:
        pool, started = CodecThreads(workers=2), []
        release, _ = await _held(pool, started)  # live work on one thread, the other one free
        task = asyncio.ensure_future(pool.run(started.append, "background", background=True))
        await asyncio.sleep(0.05)
        before = list(started)
        release.set()
        await task
        pool.shutdown()
        return before, started

    before, after = asyncio.run(main())
    assert before == ["held"]  # a free thread, but live work was running
    assert after == ["held", "background"]


def test_errors_reach_the_caller_and_a_cancelled_job_never_runs() -> None:
    async def main() -> list[str]:
        pool, started = CodecThreads(workers=1), []
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        release, _ = await _held(pool, started)
        waiting = asyncio.ensure_future(pool.run(started.append, "cancelled"))
        await asyncio.sleep(0.01)
        waiting.cancel()
        release.set()
        assert await pool.run(lambda: "next") == "next"
        assert pool.delay_s() == 0.0
        pool.shutdown()
        return started

    assert asyncio.run(main()) == ["held"]


def test_room_for_optional_work_only_when_nothing_waits_and_no_background_runs() -> None:
    async def main() -> list[bool]:
        pool, started, seen = CodecThreads(workers=2), [], []
        seen.append(pool.spare)  # idle
        release, job = await _held(pool, started)
        seen.append(pool.spare)  # live work runs, nothing waits: room
        other, job2 = await _held(pool, started)
        waiting = asyncio.ensure_future(pool.run(started.append, "queued"))
        await asyncio.sleep(0.01)
        seen.append(pool.spare)  # live work waits for a thread
        release.set()
        other.set()
        await asyncio.gather(job, job2, waiting)
        background, job3 = await _held(pool, started, background=True)
        seen.append(pool.spare)  # background work runs
        background.set()
        await job3
        seen.append(pool.spare)
        pool.shutdown()
        return seen

    assert asyncio.run(main()) == [True, True, False, False, True]


def test_optional_work_is_queued_at_once_so_a_second_caller_finds_no_room() -> None:
    """Live work holds both threads (nothing waits: room): the first optional job is queued and
    waits; a second one, while the first waits, finds no room and is cancelled at once; once
    the threads are free the first runs, and there is room again."""

    async def main() -> tuple[bool, bool, int, int]:
        pool, started = CodecThreads(workers=2), []
        held = [await _held(pool, started) for _ in range(2)]
        first = pool.run_spare(sum, [1, 2], start_within=10)
        second = pool.run_spare(sum, [3, 4], start_within=10)
        waiting = not first.done()
        for release, job in held:
            release.set()
            await job
        result = await first
        third = await pool.run_spare(sum, [5, 6], start_within=10)
        pool.shutdown()
        return waiting, second.cancelled(), result, third

    assert asyncio.run(main()) == (True, True, 3, 11)


def test_optional_work_not_started_in_time_is_dropped() -> None:
    """Live work holds the only thread (nothing waits: room for optional work): the optional job
    queued then cannot start, is cancelled at its deadline and never runs; one queued on a free
    thread starts at once and, running past its deadline, runs to its end."""

    async def main() -> tuple[bool, list[str], bool]:
        pool, started = CodecThreads(workers=1), []
        release, job = await _held(pool, started)
        late = pool.run_spare(started.append, "late", start_within=0.05)
        await asyncio.sleep(0.2)
        release.set()
        await job
        await asyncio.sleep(0.05)
        prompt = pool.run_spare(_burn, 0.2, start_within=0.05)
        await asyncio.sleep(0.1)  # past its deadline, still running
        await prompt
        pool.shutdown()
        return late.cancelled(), started, prompt.cancelled()

    assert asyncio.run(main()) == (True, ["held"], False)
