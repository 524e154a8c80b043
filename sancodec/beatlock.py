"""Spikes at the beats: one spike per QRS complex that `sancodec.beats` detects (a rhythm model's
SAN layer, manifest `"spikes": "beats"`).

For each beat, each kernel is placed so that its largest weight falls on the beat, with the
least-squares amplitude of the window's samples there; the kernel that explains the most energy
is kept. Its amplitude is at least one SAN step, so that quantization never drops a beat. A
learnt detector places a kernel where it correlates best, which for a wide ectopic beat can be
half a kernel away from its QRS complex; here every detected beat gets its spike on it.
"""

from __future__ import annotations

import numpy as np

from sancodec.beats import detect_beats
from sancodec.plan import CodingPlan, Spikes, Window
from sancodec.quantization import Quantizer

__all__ = ["beat_spikes"]


def beat_spikes(plan: CodingPlan, window: Window) -> Spikes:
    """One spike per beat detected in the window (positions relative to its first sample)."""
    x = window.samples.astype(np.float64)
    beats = detect_beats(x, plan.sample_rate_hz)
    if beats.size == 0:
        return Spikes(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    best_gain = np.full(beats.size, -1.0)
    ids = np.zeros(beats.size, dtype=np.int32)
    positions = np.zeros(beats.size, dtype=np.int64)
    amplitudes = np.zeros(beats.size)
    for k in range(len(plan.codebook.kernels)):
        values, left = plan.codebook.painted(k)
        v = values.astype(np.float64)
        first = beats - int(np.argmax(np.abs(v)))  # the sample the kernel's first weight paints
        index = first[:, None] + np.arange(v.size)[None, :]
        inside = (index >= 0) & (index < x.size)
        taps = np.where(inside, v[None, :], 0.0)
        energy = np.sum(taps * taps, axis=1)
        fit = np.sum(taps * x[np.clip(index, 0, x.size - 1)], axis=1)
        amplitude = np.divide(fit, energy, out=np.zeros_like(fit), where=energy > 0)
        gain = amplitude * fit  # the energy this kernel explains
        better = gain > best_gain
        best_gain[better], ids[better] = gain[better], k
        positions[better], amplitudes[better] = first[better] + left, amplitude[better]
    step = Quantizer(plan.san_step_exp).step
    amplitudes = np.where(amplitudes < 0, -1.0, 1.0) * np.maximum(np.abs(amplitudes), step)
    order = np.lexsort((positions, ids))
    return Spikes(ids[order], positions[order], amplitudes[order])
