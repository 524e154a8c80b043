"""The batcher: a batch waits for company for live work, not for background work."""

from __future__ import annotations

import asyncio

import numpy as np
from prometheus_client import CollectorRegistry
from server_harness import REPO

from sancodec.plan import Window
from server.batcher import Batcher
from server.repository import ModelRepository
from server.telemetry import Telemetry

WAIT_S = 30.0  # far longer than the test: a batch that waits for company waits it all


def _window(model_samples: int) -> Window:
    x = np.random.default_rng(0).normal(size=model_samples).astype(np.float32)
    return Window(0, 0, model_samples, 0, x, 0)


def test_background_windows_do_not_wait_for_company_and_live_ones_do() -> None:
    repository = ModelRepository(REPO / "models")
    repository.load()
    model = repository.get("ecg")
    windows = [_window(model.manifest.block_length)]

    async def run() -> tuple[int, bool]:
        batcher = Batcher(64, WAIT_S, 4096, Telemetry(CollectorRegistry()))
        batcher.start()
        try:
            live = asyncio.ensure_future(batcher.detect(model, windows))
            await asyncio.sleep(0.5)
            waited = not live.done()  # alone, below a full batch: it waits for company
            # background work goes at once, and takes the waiting live window along
            spikes = await asyncio.wait_for(batcher.detect(model, windows, wait=False), 10)
            await asyncio.wait_for(live, 10)
            return len(spikes), waited
        finally:
            await batcher.stop()

    count, waited = asyncio.run(run())
    assert waited
    assert count == 1
