"""Heartbeats in ECG: a QRS detector cheap enough for the server's block path, and beat matching.

The detector is a Pan-Tompkins-style energy detector, compiled (`sancodec.compiled`: a block's
NumPy calls cost more than its arithmetic): a band-pass made of two
centred moving means (about 5-25 Hz), its squared slope integrated over 100 ms, a threshold at a
share of each 4-second stretch's 90th percentile (the level of its typical beats, so that a few
ectopic beats ten times larger do not hide the normal ones), one beat per run above it (at the band-passed
signal's largest magnitude) and a 200 ms refractory period. `bench/clinical.py` measures it
against wfdb's GQRS and the MIT-BIH reference annotations.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sancodec.compiled import compiled
from sancodec.errors import InvalidInputError

__all__ = ["BEAT_TOLERANCE_S", "detect_beats", "kept_beats", "match_beats", "rr_errors_s"]

BEAT_TOLERANCE_S = 0.150  # the matching window of ANSI/AAMI EC57 and wfdb's compare_annotations
REFRACTORY_S = 0.200  # no two QRS complexes closer than this (300 bpm)
STRETCH_S = 4.0  # each stretch gets its own threshold, so the detector follows amplitude drift
STRETCH_PERCENTILE = 90  # QRS complexes fill 15-25 % of an ECG's samples
THRESHOLD_SHARE = 0.4  # of a stretch's STRETCH_PERCENTILE of slope energy
FLOOR_SHARE = 0.05  # a stretch far quieter than the loudest one holds noise, not beats

Beats = npt.NDArray[np.int64]


@compiled
def _running_sums(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """0, then x's cumulative sums (np.cumsum's, added in the same order)."""
    sums = np.empty(x.size + 1)
    total = 0.0
    sums[0] = total
    for i in range(x.size):
        total += x[i]
        sums[i + 1] = total
    return sums


@compiled
def _moving_mean(sums: npt.NDArray[np.float64], width: int) -> npt.NDArray[np.float64]:
    """np.convolve(x, ones(width) / width, "same") (zeros beyond the ends) from x's running sums
    (`_running_sums`): O(n) whatever the width. Sample i's window ends at running sum
    min(i + 1 + (width - 1) // 2, n) and starts `width` before it, at least at 0."""
    width = max(1, width)
    n = sums.size - 1
    before = width - 1 - (width - 1) // 2
    mean = np.empty(n)
    for i in range(n):
        hi, lo = min(max(i + width - before, 0), n), min(max(i - before, 0), n)
        mean[i] = (sums[hi] - sums[lo]) / width
    return mean


@compiled
def _percentile(x: npt.NDArray[np.float64], q: float) -> float:
    """np.percentile(x, q) (its linear method, the same float), from one partial sort."""
    index = q / 100 * (x.size - 1)
    below = int(index)
    part = np.partition(x, below)
    a = float(part[below])
    b = float(np.min(part[below + 1 :])) if below + 1 < x.size else a
    t = index - below
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


@compiled
def _detect(signal: npt.NDArray[np.float64], fs: float) -> Beats:
    """The detector on a signal of at least 2 samples at `fs` Hz."""
    n = signal.size
    stretch, gap = max(1, round(STRETCH_S * fs)), round(REFRACTORY_S * fs)
    sums = _running_sums(signal)
    band = _moving_mean(sums, round(0.040 * fs)) - _moving_mean(sums, round(0.200 * fs))
    slope = np.empty(n)  # np.gradient's
    slope[0], slope[n - 1] = band[1] - band[0], band[n - 1] - band[n - 2]
    for i in range(1, n - 1):
        slope[i] = (band[i + 1] - band[i - 1]) / 2.0
    energy = _moving_mean(_running_sums(slope * slope), round(0.100 * fs))
    # one threshold per stretch (a short tail joins the one before it): a share of its
    # STRETCH_PERCENTILE, floored; the stretches' edges as np.linspace(0, n, count + 1) has them
    count = max(1, n // stretch)
    edges = np.empty(count + 1, dtype=np.int64)
    for k in range(count):
        edges[k] = int(k * (n / count))
    edges[count] = n
    levels = np.empty(count)
    for k in range(count):
        levels[k] = _percentile(energy[edges[k] : edges[k + 1]], STRETCH_PERCENTILE)
    levels = np.maximum(levels, FLOOR_SHARE * levels.max())
    # one beat per run above the threshold, at the band's largest magnitude in it; of two
    # beats closer than `gap`, the larger
    beats = np.empty(n, dtype=np.int64)
    found, k, i = 0, 0, 0
    while i < n:
        while edges[k + 1] <= i:
            k += 1
        if not energy[i] > THRESHOLD_SHARE * levels[k]:
            i += 1
            continue
        peak = i
        while i < n and energy[i] > THRESHOLD_SHARE * levels[k]:
            if abs(band[i]) > abs(band[peak]):
                peak = i
            i += 1
            while i < n and edges[k + 1] <= i:
                k += 1
        if found and peak - beats[found - 1] < gap:
            if abs(band[peak]) > abs(band[beats[found - 1]]):
                beats[found - 1] = peak
            continue
        beats[found] = peak
        found += 1
    return beats[:found]


def detect_beats(x: npt.ArrayLike, sample_rate_hz: float) -> Beats:
    """Sample indices of the QRS complexes in `x` (one ECG lead, any units), in order."""
    if not sample_rate_hz > 0:
        raise InvalidInputError(f"sample rate must be positive, got {sample_rate_hz}")
    signal = np.asarray(x, dtype=np.float64)
    if signal.ndim != 1:
        raise InvalidInputError(f"one lead at a time: got shape {signal.shape}")
    if signal.size < max(2, round(0.5 * sample_rate_hz)) or not np.all(np.isfinite(signal)):
        return np.zeros(0, dtype=np.int64)
    return _detect(signal, float(sample_rate_hz))


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
