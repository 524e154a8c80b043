"""bench/clinical.py: the peers land at the rate asked for, and their decoded signals are theirs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.clinical import FS, bioleptic_at, load, model_point, wavelet_at
from client.beats import beat_fidelity
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


def test_rhythm_mode_keeps_the_beats_under_a_tenth_of_a_bit(shared_data: Path) -> None:
    """ecg-rhythm on five minutes of 233 (never seen; 498 beats, PVCs among them), kernel charged."""
    signal, reference = load("233")
    point = model_point("ecg-rhythm", signal, "san")
    assert point["bps"] <= 0.1
    found = beat_fidelity("MLII", signal, point["x_hat"], FS, reference)
    assert found.decoded is not None
    assert found.decoded.sensitivity_percent >= 99.0
    assert found.decoded.positive_predictivity_percent >= 99.0
    assert found.agreement_percent >= 99.0
    lowrate = model_point("ecg-lowrate", signal, "san")
    assert beat_fidelity("MLII", signal, lowrate["x_hat"], FS).agreement_percent < 60
