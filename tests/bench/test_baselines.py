"""Baseline coders of bench/baselines.py against the compression.md §8 sanity values (record 100)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bench.baselines import (
    ZSTD_AVAILABLE,
    dct_coder,
    flac_bps,
    h0_bits,
    interpolate_bps_at_prdn,
    interpolate_prdn_at_bps,
    load_mitdb_adc,
    sweep,
    wavelet_coder,
    zstd_bps,
)

# compression.md §8 (Δ: bps, PRDN %) and §3b; "if yours differ by > 3 %, the pipeline differs"
WAVELET_SANITY = {1: (3.73, 0.76), 8: (1.13, 4.80), 24: (0.555, 8.59)}
FLAC_BPS = 4.16
ZSTD19_BPS = 5.05
ZSTD19_DELTA_BPS = 4.34


@pytest.fixture(scope="module")
def record100(shared_data: Path) -> npt.NDArray[np.int64]:
    """Full MIT-BIH record 100, channel 0 (MLII), ADC counts minus 1024 (650 000 samples)."""
    return load_mitdb_adc(shared_data / "wfdb" / "mitdb" / "100")


def test_load_full_record_baseline_removed(record100: npt.NDArray[np.int64]) -> None:
    assert record100.shape == (650000,)
    assert np.issubdtype(record100.dtype, np.integer)
    assert record100[0] == 995 - 1024  # first MLII count of 100.dat


@pytest.mark.parametrize("step", sorted(WAVELET_SANITY))
def test_wavelet_coder_matches_sanity_values(record100: npt.NDArray[np.int64], step: int) -> None:
    r = wavelet_coder(record100, step)
    assert r["n_samples"] == 317 * 2048  # the last partial block is dropped
    want_bps, want_prdn = WAVELET_SANITY[step]
    assert r["bps"] == pytest.approx(want_bps, rel=0.03)
    assert r["prdn"] == pytest.approx(want_prdn, rel=0.03)
    assert 0 < r["prd"] < r["prdn"]  # record 100: PRDN ≈ 1.88 × PRD


def test_wavelet_sweep_interpolates_the_2c_operating_points(
    record100: npt.NDArray[np.int64],
) -> None:
    points = sweep(record100, wavelet_coder, [1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32])
    assert [p["step"] for p in points][:2] == [1.0, 1.5]
    # §2c: PRDN 2 % → 2.38 bps, 5 % → 1.07, 9 % → 0.535
    for target, want in ((2.0, 2.38), (5.0, 1.07), (9.0, 0.535)):
        assert interpolate_bps_at_prdn(points, target) == pytest.approx(want, rel=0.03)
    assert math.isnan(interpolate_bps_at_prdn(points, 50.0))  # beyond the swept range


def test_dct64_costs_more_than_wavelet_below_1_bps(record100: npt.NDArray[np.int64]) -> None:
    x = record100[: 317 * 2048]  # the wavelet coder's samples
    dct = sweep(x, dct_coder, [4, 8, 16, 24, 48])
    wav = sweep(x, wavelet_coder, [4, 8, 16, 24, 48])
    for prdn_target in (5.0, 9.0):
        ratio = interpolate_bps_at_prdn(dct, prdn_target) / interpolate_bps_at_prdn(
            wav, prdn_target
        )
        assert 1.0 < ratio < 1.4  # §2c: block-64 DCT needs +10-25 % below 1 bps


def test_flac_matches_lossless_anchor(record100: npt.NDArray[np.int64]) -> None:
    assert flac_bps(record100) == pytest.approx(FLAC_BPS, rel=0.03)


def test_zstd_matches_lossless_anchors(record100: npt.NDArray[np.int64]) -> None:
    assert ZSTD_AVAILABLE, "zstandard is a benchmark dependency (pip install zstandard)"
    assert zstd_bps(record100, level=19) == pytest.approx(ZSTD19_BPS, rel=0.05)
    assert zstd_bps(record100, level=19, delta=True) == pytest.approx(ZSTD19_DELTA_BPS, rel=0.05)


def test_h0_bits() -> None:
    assert h0_bits([3, 3, 3, 3]) == 0.0
    assert h0_bits([]) == 0.0
    assert h0_bits([0, 1, 0, 1]) == pytest.approx(4.0)
    assert h0_bits([0, 1, 2, 3, 0, 1, 2, 3]) == pytest.approx(16.0)


def test_wavelet_coder_near_lossless_at_tiny_step() -> None:
    x = np.random.default_rng(0).normal(0, 40, 4096 + 100).round()
    r = wavelet_coder(x, 0.01)
    assert r["n_samples"] == 4096
    assert r["prdn"] < 0.05
    assert [q.shape[0] for q in r["coefficients"]] == [2] * 6


def test_coders_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="shorter than one block"):
        wavelet_coder(np.zeros(100), 1.0)
    with pytest.raises(ValueError, match="step"):
        dct_coder(np.zeros(128), 0.0)
    with pytest.raises(ValueError, match="integer"):
        flac_bps(np.zeros(100))


def test_interpolation_is_log_log() -> None:
    points = [{"bps": 1.0, "prdn": 10.0}, {"bps": 4.0, "prdn": 2.5}, {"bps": 2.0, "prdn": 20.0}]
    # the dominated point (2 bps, 20 %) is ignored; log-log midpoint of 1→4 bps is 2 bps / 5 %
    assert interpolate_prdn_at_bps(points, 2.0) == pytest.approx(5.0)
    assert interpolate_bps_at_prdn(points, 5.0) == pytest.approx(2.0)
    assert math.isnan(interpolate_prdn_at_bps(points, 8.0))
