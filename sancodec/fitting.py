"""Kernels fitted to a recording without PyTorch: detect with the kernels, refit them by least squares.

Each round detects spikes with the current kernels (an injected detector: the bundle's encoder
with those kernels, `sancodec.encodergraph`), then, the positions fixed, alternates the two
closed-form least-squares steps of min ||x - sum_s a_s shift(p_k, t_s)||^2 (p_k the footprint a
spike of kernel k paints, `Codebook.painted`): the amplitudes given the kernels (the normal
equations by conjugate gradients: footprints barely overlap, so they are nearly diagonal), then
each kernel given the amplitudes (m x m Toeplitz normal equations from the spikes' overlaps).
A coder paints the encoder's correlations, not free amplitudes, so each kernel is then scaled
so that its correlations paint the least-squares best reconstruction, and quantized as the
format stores it (`quantize_kernel`). The round whose kernels code best (the starting ones
included) wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.codebook import Codebook, DecoderMode, quantize_kernel
from sancodec.encodergraph import BatchDetector, DetectorFactory, Kernels
from sancodec.errors import InvalidInputError

__all__ = [
    "Fit",
    "Placed",
    "Target",
    "fit_kernels",
    "place_spikes",
    "recentred",
    "refine",
    "squared_error",
    "starts",
]

Samples = npt.NDArray[np.float64]
Kernel = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Placed:
    """Spikes on one long target: kernel ids, positions (sorted) and amplitudes."""

    kernel_ids: npt.NDArray[np.int32]
    positions: npt.NDArray[np.int64]
    amplitudes: Samples

    def __post_init__(self) -> None:
        n = self.positions.size
        if self.kernel_ids.shape != (n,) or self.amplitudes.shape != (n,):
            raise InvalidInputError("kernel ids, positions and amplitudes must match in length")
        if np.any(np.diff(self.positions) < 0):
            raise InvalidInputError("spike positions must be sorted")


@dataclass(frozen=True, eq=False)
class Fit:
    kernels: tuple[Kernel, ...]  # quantized, as a codebook holds them
    rounds: int  # the round whose kernels won (0: a start's kernels as they were)
    errors: tuple[float, ...]  # per start and round: what the detected spikes paint, squared error


def _painted(w: Kernel, mode: DecoderMode) -> tuple[Samples, int]:
    values, left = Codebook((w,), mode).painted(0)
    return values.astype(np.float64), left


def _kernel_from_painted(values: Samples, mode: DecoderMode) -> Samples:
    return values if mode is DecoderMode.ADJOINT else values[::-1]


def _index(positions: npt.NDArray[np.int64], left: int, m: int) -> npt.NDArray[np.int64]:
    return positions[:, None] - left + np.arange(m)[None, :]  # (S, m)


def _paint(
    n: int, footprints: Sequence[tuple[Samples, int]], placed: Placed, a: Samples
) -> Samples:
    out = np.zeros(n)
    for k, (values, left) in enumerate(footprints):
        mine = placed.kernel_ids == k
        index = _index(placed.positions[mine], left, values.size)
        out += np.bincount(index.ravel(), (a[mine, None] * values).ravel(), minlength=n)
    return out


def _correlate(y: Samples, footprints: Sequence[tuple[Samples, int]], placed: Placed) -> Samples:
    """Phi^T y: each spike's footprint against y."""
    out = np.zeros(placed.positions.size)
    for k, (values, left) in enumerate(footprints):
        mine = placed.kernel_ids == k
        out[mine] = y[_index(placed.positions[mine], left, values.size)] @ values
    return out


def _amplitudes(
    x: Samples, footprints: Sequence[tuple[Samples, int]], placed: Placed, start: Samples
) -> Samples:
    """argmin_a ||x - Phi a||^2 by conjugate gradients on Phi^T Phi a = Phi^T x."""
    a = start.copy()
    r = _correlate(x - _paint(x.size, footprints, placed, a), footprints, placed)
    d, rr = r.copy(), float(r @ r)
    scale = _correlate(x, footprints, placed)
    goal = 1e-20 * max(float(scale @ scale), 1e-300)
    for _ in range(50):
        if rr <= goal:
            break
        gd = _correlate(_paint(x.size, footprints, placed, d), footprints, placed)
        step = rr / float(d @ gd)
        a += step * d
        r -= step * gd
        rr, previous = float(r @ r), rr
        d = r + (rr / previous) * d
    return a


def _toeplitz_gram(positions: npt.NDArray[np.int64], a: Samples, m: int) -> Samples:
    """A[i, j] = r[|i - j|], r[d] = sum of a_s a_s' over spike pairs d apart (r[0]: sum a^2)."""
    r = np.zeros(m)
    r[0] = float(a @ a)
    for offset in range(1, positions.size):
        gaps = positions[offset:] - positions[:-offset]  # positions are sorted
        near = gaps < m
        if not near.any():
            break
        products = a[offset:][near] * a[:-offset][near]
        np.add.at(r, gaps[near], np.where(gaps[near] == 0, 2.0, 1.0) * products)
    lags = np.abs(np.subtract.outer(np.arange(m), np.arange(m)))
    return r[lags]


def _footprints_lsq(
    x: Samples, footprints: list[tuple[Samples, int]], placed: Placed, a: Samples
) -> list[tuple[Samples, int]]:
    """Each kernel's footprint given the amplitudes and the other kernels (in turn)."""
    for k, (values, left) in enumerate(footprints):
        mine = placed.kernel_ids == k
        if not np.any(a[mine]):
            continue
        others = x - _paint(x.size, footprints, placed, np.where(mine, 0.0, a))
        index = _index(placed.positions[mine], left, values.size)
        b = a[mine] @ others[index]  # (m,)
        gram = _toeplitz_gram(placed.positions[mine], a[mine], values.size)
        footprints[k] = (_solve(gram, b), left)
    return footprints


def _solve(gram: Samples, b: Samples) -> Samples:
    """gram^-1 b for a Gram matrix; its least-squares solution where it is singular."""
    try:
        return np.asarray(np.linalg.solve(gram, b), dtype=np.float64)
    except np.linalg.LinAlgError:
        return np.asarray(np.linalg.lstsq(gram, b, rcond=None)[0], dtype=np.float64)


def _scaled(x: Samples, footprints: list[tuple[Samples, int]], placed: Placed) -> list[Samples]:
    """Unit-norm footprints scaled by g_k^(1/2), g the least-squares gains of what each kernel's
    own correlations paint (a coder paints correlations: scaling p by c paints c^2 as much).
    The correlations are taken with the footprint, which is the encoder's kernel in `adjoint`
    mode (the codec's); in `correlation` mode the gains are an approximation."""
    units = [(v / (np.linalg.norm(v) or 1.0), left) for v, left in footprints]
    c = _correlate(x, units, placed)
    painted = np.stack(
        [
            _paint(x.size, units, placed, np.where(placed.kernel_ids == k, c, 0.0))
            for k in range(len(units))
        ]
    )  # (q, n)
    gains = np.linalg.lstsq(painted @ painted.T, painted @ x, rcond=None)[0]
    return [v * np.sqrt(max(g, 0.0) or 1.0) for (v, _), g in zip(units, gains, strict=True)]


def refine(
    x: Samples, kernels: Kernels, mode: DecoderMode, placed: Placed, alternations: int = 4
) -> tuple[tuple[Kernel, ...], Samples]:
    """Kernels and amplitudes refitted to x at these spike positions (alternating least squares);
    the kernels scaled for painting correlations and quantized. Returns (kernels, amplitudes)."""
    footprints = [_painted(np.asarray(w, dtype=np.float32), mode) for w in kernels]
    a = placed.amplitudes.astype(np.float64)
    for _ in range(alternations):
        a = _amplitudes(x, footprints, placed, a)
        footprints = _footprints_lsq(x, footprints, placed, a)
    fitted = tuple(
        quantize_kernel(_kernel_from_painted(v, mode)) for v in _scaled(x, footprints, placed)
    )
    return fitted, _amplitudes(x, [_painted(w, mode) for w in fitted], placed, a)


def squared_error(x: Samples, kernels: Kernels, mode: DecoderMode, placed: Placed) -> float:
    """||x - what the spikes paint||^2."""
    footprints = [_painted(np.asarray(w, dtype=np.float32), mode) for w in kernels]
    return float(np.sum((x - _paint(x.size, footprints, placed, placed.amplitudes)) ** 2))


@dataclass(frozen=True, eq=False)
class Target:
    """Channels laid end to end on one line with zero gaps wider than any kernel, each block's
    mean removed (a coder codes it as the block's offset)."""

    x: Samples
    bases: tuple[int, ...]  # where each channel starts on the line
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, channels: Sequence[Samples], block_length: int, gap: int) -> Target:
        parts, bases, at = [np.zeros(gap)], [], gap
        for row in channels:
            blocks = [
                b - b.mean()
                for b in np.array_split(row, range(block_length, row.size, block_length))
            ]
            parts += [np.concatenate(blocks), np.zeros(gap)]
            bases.append(at)
            at += row.size + gap
        return cls(np.concatenate(parts), tuple(bases), tuple(int(r.size) for r in channels))


def place_spikes(
    channels: Sequence[Samples], target: Target, detect: BatchDetector, block_length: int,
    context: int,
) -> Placed:  # fmt: skip
    """Detect every block of every channel in its window (the block and `context` samples each
    side, mean removed, as a ChannelCoder cuts them); the spikes inside the block, on the line."""
    windows: dict[int, list[tuple[int, int, int, npt.NDArray[np.float32]]]] = {}  # by length
    for row, base in zip(channels, target.bases, strict=True):
        for start in range(0, row.size, block_length):
            end = min(start + block_length, row.size)
            lo, hi = max(start - context, 0), min(end + context, row.size)
            part = (row[lo:hi] - row[lo:hi].mean()).astype(np.float32)
            windows.setdefault(hi - lo, []).append((base + lo, base + start, base + end, part))
    ids, positions, amplitudes = [np.zeros(0, np.int32)], [np.zeros(0, np.int64)], [np.zeros(0)]
    for found in windows.values():
        batch = np.stack([w[3] for w in found])[:, None, :]  # (B, 1, T)
        for (offset, first, end, _), spikes in zip(found, detect(batch), strict=True):
            at = spikes.positions + offset
            mine = (at >= first) & (at < end)  # a window's spikes count in its own block only
            ids.append(spikes.kernel_ids[mine])
            positions.append(at[mine])
            amplitudes.append(spikes.amplitudes[mine])
    at = np.concatenate(positions)
    order = np.argsort(at, kind="stable")
    return Placed(
        np.concatenate(ids)[order].astype(np.int32), at[order], np.concatenate(amplitudes)[order]
    )


def recentred(w: npt.ArrayLike, peak_at: int) -> Kernel:
    """The kernel shifted (zeros shifted in) so that its largest weight sits at `peak_at`, unit norm:
    another start, whose footprint covers another part of the waveform around the peak."""
    v = np.asarray(w, dtype=np.float64)
    shift = peak_at - int(np.argmax(np.abs(v)))
    out = np.zeros_like(v)
    if shift >= 0:
        out[shift:] = v[: v.size - shift]
    else:
        out[:shift] = v[-shift:]
    return (out / (np.linalg.norm(out) or 1.0)).astype(np.float32)


def starts(
    kernels: tuple[npt.NDArray[np.float32], ...],
) -> list[tuple[npt.NDArray[np.float32], ...]]:
    """Where fitting starts: the bundle's kernels, and each with its peak moved to its centre and
    1/16, 1/8 and 3/16 of its size either side. Detection and refitting settle near their start:
    which part of a beat a footprint covers decides where (on MIT-BIH 100 and 105 the best of
    these leaves a third less squared error than the shipped kernels' start)."""
    out = [kernels]
    for sixteenths in (0, 1, -1, 2, -2, 3, -3):
        out.append(tuple(recentred(w, (w.size - 1) // 2 + w.size * sixteenths // 16)
                         for w in kernels))  # fmt: skip
    return out


def fit_kernels(
    channels: Sequence[Samples],
    starts: Sequence[Kernels],
    mode: DecoderMode,
    detector_for: DetectorFactory,
    *,
    block_length: int,
    context: int,
    rounds: int = 3,
) -> Fit:
    """Kernels fitted to these model-domain channels: from each start, `rounds` rounds of detecting
    with the current kernels and refining them at the spikes found. The best kernels seen (by the
    squared error of what their own detections paint), a start's own included."""
    gap = max(w.size for w in starts[0]) + 1
    target = Target.of(channels, block_length, gap)
    errors: list[float] = []
    best: tuple[float, tuple[Kernel, ...], int] = (np.inf, tuple(starts[0]), 0)
    for start in starts:
        kernels = tuple(np.asarray(w, dtype=np.float32) for w in start)
        for round_ in range(rounds + 1):
            placed = place_spikes(channels, target, detector_for(kernels), block_length, context)
            errors.append(squared_error(target.x, kernels, mode, placed))
            if errors[-1] < best[0]:
                best = (errors[-1], kernels, round_)
            if round_ == rounds or placed.positions.size == 0:
                break
            kernels, _ = refine(target.x, kernels, mode, placed)
    return Fit(best[1], best[2], tuple(errors))
