"""sancodec.fitting: kernels refitted by least squares at the spikes the bundle's encoder finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from recordings import read_recording
from sancodec.bundle import Bundle, find_bundle
from sancodec.codebook import Codebook, DecoderMode, quantize_kernel
from sancodec.encodergraph import kernel_swapper, onnx_detector
from sancodec.fitting import (
    Placed,
    Target,
    _toeplitz_gram,
    fit_kernels,
    place_spikes,
    recentred,
    refine,
    squared_error,
)

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


@pytest.fixture(scope="module")
def ecg() -> Bundle:
    return find_bundle(MODELS, "ecg")


def _standardized(path: Path, end: int) -> npt.NDArray[np.float64]:
    x = read_recording(path, sampfrom=108000, sampto=108000 + end).samples[0]
    return (x - x.mean()) / x.std()


def test_least_squares_lowers_the_error_at_fixed_detections(shared_data: Path, ecg: Bundle) -> None:
    m = ecg.manifest
    x = _standardized(shared_data / "wfdb" / "mitdb" / "100.hea", 43200)
    target = Target.of([x], m.block_length, 257)
    # the bundle's own kernels swapped into its encoder detect what the shipped encoder does
    swapped = place_spikes([x], target, kernel_swapper(ecg)(m.codebook.kernels), m.block_length,
                           m.context)  # fmt: skip
    shipped = onnx_detector(ecg.encoder_path.read_bytes())
    placed = place_spikes([x], target, shipped, m.block_length, m.context)
    np.testing.assert_array_equal(swapped.positions, placed.positions)
    # the manifest's kernels are the exported weights to float32 rounding
    np.testing.assert_allclose(swapped.amplitudes, placed.amplitudes, rtol=1e-5)
    assert 100 < placed.positions.size < 300  # about one spike a beat
    before = squared_error(target.x, m.codebook.kernels, DecoderMode.ADJOINT, placed)
    kernels, amplitudes = refine(target.x, m.codebook.kernels, DecoderMode.ADJOINT, placed)
    refitted = Placed(placed.kernel_ids, placed.positions, amplitudes)
    after = squared_error(target.x, kernels, DecoderMode.ADJOINT, refitted)
    assert after < 0.5 * before
    # what a coder paints, the correlations of the refitted kernel, does nearly as well
    correlations = np.array([target.x[t - 127 : t + 129] @ kernels[0] for t in placed.positions])
    painted = Placed(placed.kernel_ids, placed.positions, correlations)
    assert squared_error(target.x, kernels, DecoderMode.ADJOINT, painted) < 1.1 * after


def test_fitted_kernels_are_on_the_format_grid_and_beat_the_bundle(
    shared_data: Path, ecg: Bundle
) -> None:
    m = ecg.manifest
    x = _standardized(shared_data / "wfdb" / "mitdb" / "105.hea", 21600)
    fit = fit_kernels([x], [m.codebook.kernels], DecoderMode.ADJOINT, kernel_swapper(ecg),
                      block_length=m.block_length, context=m.context, rounds=2)  # fmt: skip
    assert len(fit.errors) == 3
    assert min(fit.errors) < 0.9 * fit.errors[0]  # errors[0]: the bundle's kernels
    (w,) = fit.kernels
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, quantize_kernel(w))
    assert 0.95 < np.linalg.norm(w) < 1.1  # scaled for painting correlations: near unit norm
    kernel = Codebook(fit.kernels).to_proto().kernels[0]
    assert kernel.ByteSize() < w.size  # 8 bits of peak: a few bits a weight


def test_kernel_normal_equations_count_overlapping_footprints() -> None:
    rng = np.random.default_rng(0)
    m, n = 9, 200
    positions = np.sort(rng.choice(np.arange(10, n - 10), size=25, replace=False)).astype(np.int64)
    a = rng.normal(size=positions.size)
    phi = np.zeros((n, m))  # x_hat = phi @ w for these spikes, footprint left = 4
    for t, amp in zip(positions, a, strict=True):
        phi[t - 4 + np.arange(m), np.arange(m)] += amp
    np.testing.assert_allclose(_toeplitz_gram(positions, a, m), phi.T @ phi, atol=1e-12)


def test_refine_recovers_a_kernel_from_its_spikes() -> None:
    rng = np.random.default_rng(1)
    w = np.hanning(33) * np.sin(np.arange(33) / 3.0)
    w /= np.linalg.norm(w)
    positions = np.arange(50, 4000, 40, dtype=np.int64) + rng.integers(0, 5, 99)
    a = rng.uniform(1, 3, positions.size) * rng.choice([-1, 1], positions.size)
    x = np.zeros(4100)
    for t, amp in zip(positions, a, strict=True):
        x[t - 16 : t + 17] += amp * w
    start = (np.ones(33, dtype=np.float32) / np.sqrt(33),)
    placed = Placed(np.zeros(positions.size, np.int32), positions, np.ones(positions.size))
    (fitted,), amplitudes = refine(x, start, DecoderMode.ADJOINT, placed, alternations=20)
    sign = np.sign(fitted @ w)
    np.testing.assert_allclose(sign * fitted, w, atol=4 / 128)  # 8 bits of peak
    np.testing.assert_allclose(sign * amplitudes, a, rtol=0.05)


def test_recentred_moves_the_peak_and_keeps_unit_norm() -> None:
    w = np.zeros(16)
    w[12], w[11] = -2.0, 1.0
    out = recentred(w, 7)
    assert int(np.argmax(np.abs(out))) == 7
    assert out[6] > 0
    assert np.linalg.norm(out) == pytest.approx(1.0, rel=1e-6)
