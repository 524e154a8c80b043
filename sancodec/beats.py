"""Heartbeats in ECG: a QRS detector cheap enough for the server's block path, and beat matching.

The detector is a Pan-Tompkins-style energy detector in plain NumPy: a band-pass made of two
centred moving means (about 5-25 Hz), its squared slope integrated over 100 ms, a threshold at a
share of each 4-second stretch's 90th percentile (the level of its typical beats, so that a few
ectopic beats ten times larger do not hide the normal ones), one beat per run above it (at the band-passed
signal's largest magnitude) and a 200 ms refractory period. `bench/clinical.py` measures it
against wfdb's GQRS and the MIT-BIH reference annotations.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from sancodec.errors import InvalidInputError

__all__ = ["BEAT_TOLERANCE_S", "detect_beats", "kept_beats", "match_beats", "rr_errors_s"]

BEAT_TOLERANCE_S = 0.150  # the matching window of ANSI/AAMI EC57 and wfdb's compare_annotations
REFRACTORY_S = 0.200  # no two QRS complexes closer than this (300 bpm)
STRETCH_S = 4.0  # each stretch gets its own threshold, so the detector follows amplitude drift
STRETCH_PERCENTILE = 90  # QRS complexes fill 15-25 % of an ECG's samples
THRESHOLD_SHARE = 0.4  # of a stretch's STRETCH_PERCENTILE of slope energy
FLOOR_SHARE = 0.05  # a stretch far quieter than the loudest one holds noise, not beats

Beats = npt.NDArray[np.int64]


def _running_sums(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.concatenate(([0.0], np.cumsum(x)))


def _moving_mean(sums: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    """np.convolve(x, ones(width) / width, "same") (zeros beyond the ends) from x's running sums
    (`_running_sums`): O(n) whatever the width. Sample i's window ends at running sum
    min(i + 1 + (width - 1) // 2, n) and starts `width` before, at least at 0: the sums padded
    with zeros before and their total after, so that both are slices."""
    width = max(1, width)
    n, after = sums.size - 1, (width - 1) // 2
    before = width - 1 - after
    padded = np.concatenate((np.zeros(before), sums, np.full(after, sums[-1])))
    hi = before + 1 + after
    mean: npt.NDArray[np.float64] = (
        padded[hi : hi + n] - padded[hi - width : hi - width + n]
    ) / width
    return mean


def _percentile(x: npt.NDArray[np.float64], q: float) -> float:
    """np.percentile(x, q) (its linear method, the same float), from one partial sort."""
    index = q / 100 * (x.size - 1)
    below = int(index)
    above = min(below + 1, x.size - 1)
    part = np.partition(x, [below, above])
    a, b, t = float(part[below]), float(part[above]), index - below
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def _energy(x: npt.NDArray[np.float64], fs: float) -> tuple[npt.NDArray[np.float64], ...]:
    sums = _running_sums(x)
    band = _moving_mean(sums, round(0.040 * fs)) - _moving_mean(sums, round(0.200 * fs))
    slope = np.gradient(band)
    return band, _moving_mean(_running_sums(slope * slope), round(0.100 * fs))


def _thresholds(energy: npt.NDArray[np.float64], fs: float) -> npt.NDArray[np.float64]:
    """One threshold per sample: a share of its stretch's 99th percentile, floored."""
    stretch = max(1, round(STRETCH_S * fs))
    count = max(1, energy.size // stretch)  # a short tail joins the stretch before it
    edges = np.linspace(0, energy.size, count + 1).astype(np.int64)
    levels = np.array(
        [
            _percentile(energy[a:b], STRETCH_PERCENTILE)
            for a, b in itertools.pairwise(edges.tolist())
        ]
    )
    levels = np.maximum(levels, FLOOR_SHARE * float(levels.max()))
    return np.repeat(THRESHOLD_SHARE * levels, np.diff(edges))


def detect_beats(x: npt.ArrayLike, sample_rate_hz: float) -> Beats:
    """Sample indices of the QRS complexes in `x` (one ECG lead, any units), in order."""
    if not sample_rate_hz > 0:
        raise InvalidInputError(f"sample rate must be positive, got {sample_rate_hz}")
    signal = np.asarray(x, dtype=np.float64)
    if signal.ndim != 1:
        raise InvalidInputError(f"one lead at a time: got shape {signal.shape}")
    if signal.size < round(0.5 * sample_rate_hz) or not np.all(np.isfinite(signal)):
        return np.zeros(0, dtype=np.int64)
    band, energy = _energy(signal, sample_rate_hz)
    above = energy > _thresholds(energy, sample_rate_hz)
    if not above.any():
        return np.zeros(0, dtype=np.int64)
    flips = np.flatnonzero(np.diff(np.concatenate(([0], above.view(np.int8), [0]))))
    peaks = [
        a + int(np.argmax(np.abs(band[a:b]))) for a, b in zip(flips[::2], flips[1::2], strict=True)
    ]
    return _refractory(
        np.asarray(peaks, dtype=np.int64), band, round(REFRACTORY_S * sample_rate_hz)
    )


def _refractory(peaks: Beats, band: npt.NDArray[np.float64], gap: int) -> Beats:
    """Of two peaks closer than `gap`, keep the larger."""
    kept: list[int] = []
    for p in peaks.tolist():
        if kept and p - kept[-1] < gap:
            if abs(band[p]) > abs(band[kept[-1]]):
                kept[-1] = p
            continue
        kept.append(p)
    return np.asarray(kept, dtype=np.int64)


def match_beats(
    reference: npt.ArrayLike, test: npt.ArrayLike, tolerance: int
) -> tuple[Beats, Beats]:
    """Pairs (indices into `reference`, indices into `test`) of beats at most `tolerance`
    samples apart, one to one, each reference beat taking its nearest free test beat in order."""
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    tst = np.sort(np.asarray(test, dtype=np.int64))
    if tolerance < 0:
        raise InvalidInputError(f"tolerance must be non-negative, got {tolerance}")
    pairs_ref: list[int] = []
    pairs_test: list[int] = []
    j = 0
    for i, r in enumerate(ref.tolist()):
        while j < tst.size and tst[j] < r - tolerance:
            j += 1
        best = j
        while best + 1 < tst.size and abs(int(tst[best + 1]) - r) < abs(int(tst[best]) - r):
            best += 1
        if best < tst.size and abs(int(tst[best]) - r) <= tolerance:
            pairs_ref.append(i)
            pairs_test.append(best)
            j = best + 1
    return np.asarray(pairs_ref, dtype=np.int64), np.asarray(pairs_test, dtype=np.int64)


def rr_errors_s(
    reference: npt.ArrayLike, test: npt.ArrayLike, sample_rate_hz: float
) -> npt.NDArray[np.float64]:
    """|RR_test - RR_ref| in seconds for each RR interval whose two reference beats are both
    matched (within BEAT_TOLERANCE_S) by consecutive test beats."""
    ref = np.sort(np.asarray(reference, dtype=np.int64))
    tst = np.sort(np.asarray(test, dtype=np.int64))
    i, j = match_beats(ref, tst, round(BEAT_TOLERANCE_S * sample_rate_hz))
    if i.size < 2:
        return np.zeros(0)
    consecutive = (np.diff(i) == 1) & (np.diff(j) == 1)
    rr_ref = np.diff(ref[i])[consecutive]
    rr_test = np.diff(tst[j])[consecutive]
    errors: npt.NDArray[np.float64] = np.abs(rr_test - rr_ref) / sample_rate_hz
    return errors


def kept_beats(
    signal: npt.ArrayLike, reconstruction: npt.ArrayLike, sample_rate_hz: float
) -> tuple[int, int]:
    """(beats detected in `signal`, how many of them the reconstruction's detections keep within
    BEAT_TOLERANCE_S): the server's per-block figure, pooled over a block's channels."""
    original = detect_beats(signal, sample_rate_hz)
    if original.size == 0:
        return 0, 0
    decoded = detect_beats(reconstruction, sample_rate_hz)
    kept, _ = match_beats(original, decoded, round(BEAT_TOLERANCE_S * sample_rate_hz))
    return int(original.size), int(kept.size)
