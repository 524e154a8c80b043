"""The process that checks streams' kernels (server.checks) answers as the server's own threads
would, in a process of its own, and takes no check once the server stops."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from sancodec.bundle import load_bundle
from sancodec.encodergraph import kernel_swapper
from sancodec.kernelupdates import answer_check
from sancodec.plan import CodingPlan
from sancodec.streamcoder import FitRequest, StreamCoder
from server.checks import CheckProcess

BUNDLE_DIR = Path(__file__).resolve().parents[2] / "models" / "ecg" / "1"


@pytest.fixture(scope="module")
def request_and_plan(mitdb100: np.ndarray) -> tuple[FitRequest, CodingPlan]:
    """The first check of a stream of record 100 under the shipped ecg model (after 4 blocks)."""
    bundle = load_bundle(BUNDLE_DIR)
    plan = CodingPlan.from_manifest(bundle.manifest)
    coder = StreamCoder([plan], bundle.manifest.adapt_after_samples)
    coder.push(mitdb100[None, :] / 200.0)  # mV
    request = coder.fit_due()
    assert request is not None
    return request, plan


def test_a_check_in_the_process_answers_as_in_the_server(
    request_and_plan: tuple[FitRequest, CodingPlan],
) -> None:
    request, plan = request_and_plan
    swapper = kernel_swapper(load_bundle(BUNDLE_DIR), threads=1)
    here = answer_check(plan, request, swapper, swapper(request.codebook.kernels))
    assert here is not None  # the shipped kernels do not suit record 100: new ones are sent
    checks = CheckProcess()
    try:
        before = {p.pid for p in multiprocessing.active_children()}
        there = checks.checker(BUNDLE_DIR)(plan, request)
        spawned = {p.pid for p in multiprocessing.active_children()} - before
        assert spawned  # it ran in a process of its own, started by the first check
        assert there is not None
        assert len(there) == len(here[0])
        assert all(np.array_equal(a, b) for a, b in zip(there, here[0], strict=True))
    finally:
        checks.shutdown()
    with pytest.raises(RuntimeError, match="stopping"):
        checks.checker(BUNDLE_DIR)(plan, request)
