"""Baseline coders for the rate-distortion benchmark (compression.md §8): wavelet, DCT-64, FLAC, zstd.

Protocol (compression.md §8/§9, rate-distortion-findings.md §1):
- data: MIT-BIH channel 0 (MLII) as integer ADC counts minus the ADC zero (1024), full record;
- lossy coders work on non-overlapping blocks; the trailing partial block is dropped, and rate and
  distortion are both counted over the coded samples only (record 100: 317 blocks of 2048 =
  649 216 samples);
- lossy rate = sum over streams of count * H0(stream) (zero-order entropy, an ideal adaptive
  coder estimate); each subband (wavelet) or coefficient index (DCT) is one stream pooled over
  every block; side info is not counted (< 0.01 b/s);
- lossless rate = real encoded bytes (FLAC via soundfile, zstd via the optional `zstandard`);
- PRD (baseline already removed) and PRDN come from `sancodec.metrics`, as does bits/sample.

Expected on record 100 (§8): wavelet Δ=1: 3.73 bps / PRDN 0.76 %; Δ=8: 1.13 / 4.80 %;
Δ=24: 0.555 / 8.59 %; FLAC 4.16 bps; zstd-19 5.05 bps on int16, 4.34 bps on first differences.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pywt
import scipy.fft

from sancodec.metrics import bits_per_sample, prd, prdn

try:  # optional: zstd baselines need the `zstandard` package (pinned version noted in the report)
    import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the environment
    _zstd = None

ZSTD_AVAILABLE = _zstd is not None

__all__ = [
    "ZSTD_AVAILABLE",
    "dct_coder",
    "flac_bps",
    "h0_bits",
    "interpolate_bps_at_prdn",
    "interpolate_prdn_at_bps",
    "load_mitdb_adc",
    "sweep",
    "wavelet_coder",
    "zstd_bps",
]

Coder = Callable[..., dict[str, Any]]


def load_mitdb_adc(path: str | Path, channel: int = 0) -> npt.NDArray[np.int64]:
    """Integer ADC counts of one channel minus the ADC zero (1024 for MIT-BIH), full record.

    `path` is the record without suffix (e.g. ``.../wfdb/mitdb/100``). The header checksum of the
    channel is verified against the decoded samples.
    """
    import wfdb

    record = wfdb.rdrecord(str(path), physical=False, channels=[channel])
    adc = np.asarray(record.d_signal[:, 0], dtype=np.int64)
    if record.checksum is not None:
        expected = int(record.checksum[0])
        got = (int(adc.sum()) + 32768) % 65536 - 32768
        if got != expected:
            raise ValueError(f"{path} channel {channel}: checksum {got} != header {expected}")
    adc_zero = int(record.adc_zero[0]) if record.adc_zero is not None else 1024
    return adc - adc_zero


def _h0(values: npt.ArrayLike) -> float:
    """Zero-order empirical entropy in bits per symbol (the §8 H0 helper)."""
    _, counts = np.unique(np.asarray(values).ravel(), return_counts=True)
    if len(counts) <= 1:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def h0_bits(values: npt.ArrayLike) -> float:
    """count * H0(values): the ideal zero-order code length of a stream, in bits."""
    v = np.asarray(values)
    return float(v.size) * _h0(v) if v.size else 0.0


def _blocks(x: npt.ArrayLike, block: int) -> npt.NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64).ravel()
    if block <= 0:
        raise ValueError(f"block must be positive, got {block}")
    n_blocks = a.size // block
    if n_blocks == 0:
        raise ValueError(f"signal of {a.size} samples is shorter than one block of {block}")
    return a[: n_blocks * block].reshape(n_blocks, block)


def _check_step(step: float) -> None:
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"step must be positive and finite, got {step}")


def _result(
    xb: npt.NDArray[np.float64], xr: npt.NDArray[np.float64], bits: float, coefficients: Any
) -> dict[str, Any]:
    n = xb.size
    orig, rec = xb.ravel(), xr.ravel()
    return {
        # bits / n via the one bits/sample formula (8 * bytes / n with bytes = bits / 8)
        "bps": bits_per_sample(bits / 8.0, n),  # type: ignore[arg-type]
        "prdn": prdn(orig, rec),
        "prd": prd(orig, rec),
        "bits": bits,
        "n_samples": n,
        "coefficients": coefficients,
    }


def wavelet_coder(
    x: npt.ArrayLike,
    step: float,
    wavelet: str = "bior4.4",
    level: int = 5,
    block: int = 2048,
) -> dict[str, Any]:
    """Naive wavelet coder of compression.md §2c: per block wavedec(periodization), round(c/step).

    Rate = sum over subbands j of n_j * H0(subband j pooled over all blocks) / coded samples.
    Returns bps, prdn, prd (over the coded samples), bits, n_samples and `coefficients`, the
    quantized integer subbands (list, coarsest first, each of shape (n_blocks, len_j)).
    """
    _check_step(step)
    xb = _blocks(x, block)
    coeffs = pywt.wavedec(xb, wavelet, mode="periodization", level=level, axis=-1)
    quant = [np.round(c / step).astype(np.int64) for c in coeffs]
    bits = sum(h0_bits(q) for q in quant)
    xr = pywt.waverec([q * step for q in quant], wavelet, mode="periodization", axis=-1)
    return _result(xb, xr[:, :block], bits, quant)


def dct_coder(x: npt.ArrayLike, step: float, block: int = 64) -> dict[str, Any]:
    """DCT baseline (§8 item 3): per block orthonormal DCT-II, round(c/step), H0 per coefficient
    index pooled over all blocks. `coefficients` is the (n_blocks, block) integer array.

    Only whole blocks of `block` samples are coded; pass x[: k * 2048] to score on exactly the
    samples of the wavelet coder.
    """
    _check_step(step)
    xb = _blocks(x, block)
    quant = np.round(scipy.fft.dct(xb, type=2, norm="ortho", axis=-1) / step).astype(np.int64)
    bits = sum(h0_bits(quant[:, k]) for k in range(block))
    xr = scipy.fft.idct(quant * step, type=2, norm="ortho", axis=-1)
    return _result(xb, xr, bits, quant)


def _as_int16(x: npt.ArrayLike) -> npt.NDArray[np.int16]:
    a = np.asarray(x)
    if a.size == 0:
        raise ValueError("need at least one sample")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"lossless coders need integer samples, got {a.dtype}")
    if a.min() < np.iinfo(np.int16).min or a.max() > np.iinfo(np.int16).max:
        raise ValueError("samples do not fit in int16")
    return a.astype(np.int16)


def flac_bps(x_int16: npt.ArrayLike, rate: int = 360) -> float:
    """Real FLAC size (libsndfile default level, PCM_16, in-memory) in bits per sample."""
    import soundfile

    a = _as_int16(x_int16)
    buf = io.BytesIO()
    soundfile.write(buf, a, samplerate=rate, format="FLAC", subtype="PCM_16")
    return bits_per_sample(len(buf.getvalue()), a.size)


def zstd_bps(x_int16: npt.ArrayLike, level: int = 19, delta: bool = False) -> float:
    """Real zstd size of the little-endian int16 samples (or their first differences, the first
    sample kept as is) in bits per sample. Needs the optional `zstandard` package."""
    if _zstd is None:
        raise RuntimeError("zstd_bps needs the `zstandard` package (pip install zstandard)")
    a = _as_int16(x_int16)
    if delta:
        a = _as_int16(np.diff(a.astype(np.int64), prepend=0))
    payload = a.astype("<i2").tobytes()
    return bits_per_sample(len(_zstd.ZstdCompressor(level=level).compress(payload)), a.size)


def sweep(x: npt.ArrayLike, coder: Coder, steps: Iterable[float], **kwargs: Any) -> list[dict]:
    """Run `coder(x, step, **kwargs)` for every step; points are {step, bps, prdn, prd}."""
    points = []
    for step in steps:
        r = coder(x, step, **kwargs)
        points.append({"step": float(step), "bps": r["bps"], "prdn": r["prdn"], "prd": r["prd"]})
    return points


def pareto_envelope(points: Sequence[dict]) -> list[tuple[float, float]]:
    """Lower (Pareto) envelope as (bps, prdn) pairs, bps increasing and prdn strictly decreasing."""
    pts = sorted((p["bps"], p["prdn"]) for p in points if p["bps"] > 0 and p["prdn"] > 0)
    env: list[tuple[float, float]] = []
    for b, d in pts:
        if not env or d < env[-1][1]:
            env.append((b, d))
    return env


def interpolate_bps_at_prdn(points: Sequence[dict], target_prdn: float) -> float:
    """bps at a PRDN by linear interpolation in log(bps)-log(PRDN) on the lower envelope of the
    points; NaN when the target lies outside the PRDN range the points span."""
    env = pareto_envelope(points)
    if not env or target_prdn <= 0:
        return math.nan
    b = np.log([e[0] for e in env])[::-1]
    d = np.log([e[1] for e in env])[::-1]  # increasing
    t = math.log(target_prdn)
    if t < d[0] or t > d[-1]:
        return math.nan
    return float(np.exp(np.interp(t, d, b)))


def interpolate_prdn_at_bps(points: Sequence[dict], target_bps: float) -> float:
    """PRDN at a bitrate by log-log interpolation on the lower envelope; NaN outside the range."""
    env = pareto_envelope(points)
    if not env or target_bps <= 0:
        return math.nan
    b = np.log([e[0] for e in env])
    d = np.log([e[1] for e in env])
    t = math.log(target_bps)
    if t < b[0] or t > b[-1]:
        return math.nan
    return float(np.exp(np.interp(t, b, d)))
