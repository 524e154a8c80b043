"""The one definition of every compression and fidelity metric (training, server, client, bench).

Notation: n samples, x the signal, x_hat the reconstruction, A the non-zero activation count,
W the total kernel weights. Paper metrics follow Bizopoulos & Koutsouris (TNNLS 2021) exactly as
the authors' code computes them; byte metrics count real encoded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from sancodec.beats import match_beats
from sancodec.errors import InvalidInputError

if TYPE_CHECKING:
    from sancodec.plan import CodedChannel

__all__ = [
    "beat_agreement",
    "bits_per_sample",
    "block_flithos",
    "compression_ratio",
    "flithos",
    "inverse_compression_ratio",
    "normalized_loss",
    "prd",
    "prdn",
    "raw_bytes",
]

Signal = npt.ArrayLike


def _pair(x: Signal, x_hat: Signal) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_hat, dtype=np.float64)
    if a.shape != b.shape:
        raise InvalidInputError(f"signal shape {a.shape} differs from reconstruction {b.shape}")
    if a.size == 0:
        raise InvalidInputError("metrics need at least one sample")
    return a, b


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, with 0/0 = 0 and x/0 = inf (a perfect or a hopeless fit)."""
    if denominator == 0.0:
        return 0.0 if numerator == 0.0 else math.inf
    return numerator / denominator


def normalized_loss(x: Signal, x_hat: Signal) -> float:
    """The paper's L~ = sum|x - x_hat| / sum|x| (baseline: the all-zero reconstruction)."""
    a, b = _pair(x, x_hat)
    return _ratio(float(np.abs(a - b).sum()), float(np.abs(a).sum()))


def inverse_compression_ratio(
    nonzero_count: int, kernel_weight_count: int, sample_count: int, kernel_ndim: int = 1
) -> float:
    """The paper's CR^-1 = ((1 + kernel_ndim) * A + W) / n: each spike costs an amplitude and
    kernel_ndim indices, and the kernels are charged to every example."""
    if sample_count <= 0:
        raise InvalidInputError(f"sample_count must be positive, got {sample_count}")
    if nonzero_count < 0 or kernel_weight_count < 0:
        raise InvalidInputError("counts must be non-negative")
    return ((1 + kernel_ndim) * nonzero_count + kernel_weight_count) / sample_count


def flithos(inverse_cr: float, loss: float) -> float:
    """The paper's phi = sqrt(CR^-2 + L~^2), the distance from the ideal (0, 0)."""
    return math.hypot(inverse_cr, loss)


def bits_per_sample(encoded_bytes: int, sample_count: int) -> float:
    """8 * encoded bytes / n, with n counting every sample of every channel coded."""
    if sample_count <= 0:
        raise InvalidInputError(f"sample_count must be positive, got {sample_count}")
    if encoded_bytes < 0:
        raise InvalidInputError(f"encoded_bytes must be non-negative, got {encoded_bytes}")
    return 8.0 * encoded_bytes / sample_count


def raw_bytes(sample_count: int, bits_per_raw_sample: int) -> float:
    """The size of the uncoded samples: their own dtype (16, 32) or the ADC resolution (11)."""
    if bits_per_raw_sample <= 0:
        raise InvalidInputError(f"bits_per_raw_sample must be positive, got {bits_per_raw_sample}")
    return sample_count * bits_per_raw_sample / 8.0


def compression_ratio(raw_size_bytes: float, encoded_bytes: int) -> float:
    """raw bytes / encoded bytes (inf for an empty code)."""
    if raw_size_bytes < 0 or encoded_bytes < 0:
        raise InvalidInputError("sizes must be non-negative")
    return _ratio(float(raw_size_bytes), float(encoded_bytes))


def prd(x: Signal, x_hat: Signal, baseline: float = 0.0) -> float:
    """PRD in percent, 100 ||x - x_hat|| / ||x - baseline||, with the ADC baseline removed.

    Pass the ADC zero (e.g. 1024 for MIT-BIH counts) as baseline; never quote PRD with it kept.
    """
    a, b = _pair(x, x_hat)
    return 100.0 * _ratio(float(np.linalg.norm(a - b)), float(np.linalg.norm(a - baseline)))


def prdn(x: Signal, x_hat: Signal) -> float:
    """PRDN in percent, 100 ||x - x_hat|| / ||x - mean(x)||: the primary fidelity figure."""
    a, b = _pair(x, x_hat)
    return 100.0 * _ratio(float(np.linalg.norm(a - b)), float(np.linalg.norm(a - a.mean())))


def beat_agreement(reference_beats: npt.ArrayLike, beats: npt.ArrayLike, tolerance: int) -> float:
    """The share of the reference's beats (sample indices) that `beats` keeps: matched one to
    one within `tolerance` samples (sancodec.beats.match_beats); NaN when the reference has none."""
    reference = np.asarray(reference_beats, dtype=np.int64)
    if reference.size == 0:
        return math.nan
    kept, _ = match_beats(reference, beats, tolerance)
    return kept.size / reference.size


def block_flithos(
    parts: Sequence[CodedChannel], weight_count: int
) -> tuple[float, float, float] | None:
    """The paper's CR^-1, L~ and phi of one coded block over its channels, each channel's mean
    removed; None for a constant block, where L~ is undefined (e.g. a 1-sample tail)."""
    centred = np.concatenate([p.signal - p.signal.mean() for p in parts])
    if not np.any(centred):
        return None
    recon = np.concatenate([p.reconstruction - p.signal.mean() for p in parts])
    spikes = sum(p.code.san.spike_count for p in parts)
    inv_cr = inverse_compression_ratio(spikes, weight_count, centred.size)
    loss = normalized_loss(centred, recon)
    return inv_cr, loss, flithos(inv_cr, loss)
