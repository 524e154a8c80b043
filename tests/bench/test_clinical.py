"""bench/clinical.py: the peers land at the rate asked for, and their decoded signals are theirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.clinical import bioleptic_at, load, model_point, wavelet_at
from sancodec import metrics


@pytest.fixture(scope="module")
def x(shared_data: Path) -> np.ndarray:
    signal, beats = load("105")
    assert beats.size > 350  # five minutes of annotated beats
    return signal[: 8 * 2048]


@pytest.mark.parametrize("coder", [wavelet_at, bioleptic_at])
def test_peers_meet_the_rate_of_a_model_point(
    x: np.ndarray, coder: Callable[[np.ndarray, float], dict[str, Any]]
) -> None:
    point = model_point("ecg", x)
    target = point["bps"]
    assert point["prdn"] == pytest.approx(metrics.prdn(x, point["x_hat"]))
    peer = coder(x, target)
    assert 0.9 * target <= peer["bps"] <= target
    assert peer["prdn"] == pytest.approx(metrics.prdn(x, peer["x_hat"]), rel=1e-3)
