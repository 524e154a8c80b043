"""Detection of many streams' windows in one call: the same spikes as one window at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb
from server_harness import REPO

from sancodec.plan import Window
from server.repository import ModelRepository


def test_windows_of_two_lengths_are_detected_as_one_at_a_time(shared_data: Path) -> None:
    repository = ModelRepository(REPO / "models")
    repository.load()
    model = repository.get("ecg")
    x = wfdb.rdrecord(str(shared_data / "wfdb/mitdb/208"), sampto=8 * 4096).p_signal[:, 0]
    n = model.manifest.block_length
    windows = [
        Window(i, i * n, size, i * n, (x[i * n : i * n + size] - x.mean()).astype(np.float32), 0)
        for i, size in enumerate([n, n - 1000, n, n - 1000, n])
    ]
    together = model.detect_windows(windows)
    alone = [model.detect(w.samples[None, None, :])[0] for w in windows]
    assert len(together) == len(windows)
    for a, b in zip(together, alone, strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.kernel_ids, b.kernel_ids)
        assert np.allclose(a.amplitudes, b.amplitudes, rtol=1e-5, atol=1e-6)
        assert a.positions.size > 0
