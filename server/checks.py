"""Checks of streams' kernels in a process of their own, beside the server's.

A check (fitting a stream's kernels, `sancodec.kernelupdates.answer_check`) is a few hundred
milliseconds of Python and NumPy. On a codec thread it shares the server's interpreter with the
live blocks, which then wait for it; in a process of its own it takes only a core's time. The
process is started (spawned: gRPC does not survive a fork) at the first check and kept; a check
waits for it on the codec thread that runs it, the thread idle meanwhile. It answers exactly as
the server would (the same function, the bundle's encoder in ONNX Runtime on one thread).
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from sancodec.bundle import load_bundle
from sancodec.encodergraph import DetectorFactory, kernel_swapper
from sancodec.kernelupdates import Checker, Kernels, answer_check
from sancodec.plan import CodingPlan
from sancodec.streamcoder import FitRequest

__all__ = ["CheckProcess"]


class CheckProcess:
    """One process that answers the checks of every stream of this server process, in turn."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def checker(self, bundle_dir: Path) -> Checker:
        """A stream's checker (`Adapter.checker`) for a model's bundle."""
        return functools.partial(self._answer, str(bundle_dir))

    def _answer(self, bundle_dir: str, plan: CodingPlan, request: FitRequest) -> Kernels | None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is stopping: no more checks")
            if self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
            pool = self._pool
        try:
            return pool.submit(_answer_here, bundle_dir, plan, request).result()
        except BrokenProcessPool:  # the process died: the next check starts another
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            raise

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


@functools.lru_cache(maxsize=16)
def _swapper(bundle_dir: str) -> DetectorFactory:
    return kernel_swapper(load_bundle(bundle_dir), threads=1)


def _answer_here(bundle_dir: str, plan: CodingPlan, request: FitRequest) -> Kernels | None:
    """In the check process: the check's answer, detecting with the kernels in use."""
    detector_for = _swapper(bundle_dir)
    answer = answer_check(plan, request, detector_for, detector_for(request.codebook.kernels))
    return None if answer is None else answer[0]
