"""The peer codec a user would pick today, measured on the same samples: `bioleptic` (PyPI; Rust
wavelet + scalar quantizer + adaptive rANS), every option of its grid, its lower convex hull as
its best case (compression.md §11), and its speed."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import bioleptic
import numpy as np
import numpy.typing as npt

from sancodec.metrics import prdn

__all__ = ["bioleptic_speed", "bioleptic_sweep", "lower_hull"]

METHODS = ("cdf97", "cdf53", "db4", "sym4")
SCALES = (6, 8, 10, 12)
CUTOFFS = ("low", "medium", "high")
MULTIPLIERS = tuple(2.0**k for k in range(-4, 9))


def _code(x: npt.NDArray[np.float64], options: Any) -> tuple[int, npt.NDArray[np.float64]]:
    data = bioleptic.compress_signal(x, options)
    return len(data), np.asarray(bioleptic.decompress_signal(data), dtype=np.float64)


def lower_hull(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lower convex hull of (bps, PRDN) (compression.md §11): a peer's best case."""
    pts = sorted(points, key=lambda p: (p["bps"], p["prdn"]))
    hull: list[dict[str, Any]] = []
    for p in pts:
        if hull and p["prdn"] >= hull[-1]["prdn"]:
            continue  # dominated
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = ((h["bps"], h["prdn"]) for h in hull[-2:])
            x3, y3 = p["bps"], p["prdn"]
            if (x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1) <= 0:
                hull.pop()  # the middle point lies above the chord
            else:
                break
        hull.append(p)
    return hull


def bioleptic_sweep(x_counts: npt.NDArray[np.float64]) -> list[dict[str, Any]]:
    """Every option of the grid on one record (ADC counts, baseline removed): the hull."""
    points = []
    for method, scale, cutoff, mult in itertools.product(METHODS, SCALES, CUTOFFS, MULTIPLIERS):
        options = bioleptic.CompressionOptions(method=method, scale=scale, cutoff=cutoff,
                                               coder="auto", quant_multiplier=mult)  # fmt: skip
        size, y = _code(x_counts, options)
        error = prdn(x_counts, y)
        if error > 0 and math.isfinite(error):
            points.append({"bps": 8 * size / x_counts.size, "prdn": error, "prd": math.nan,
                           "option": f"{method}/{scale}/{cutoff}/x{mult:g}"})  # fmt: skip
    return lower_hull(points)


def bioleptic_speed(x_counts: npt.NDArray[np.float64], option: str) -> tuple[float, float]:
    """Samples/s of encoding and decoding at one option ("method/scale/cutoff/xmult")."""
    method, scale, cutoff, mult = option.split("/")
    options = bioleptic.CompressionOptions(method=method, scale=int(scale), cutoff=cutoff,
                                           coder="auto", quant_multiplier=float(mult[1:]))  # fmt: skip
    best_enc, best_dec = math.inf, math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        data = bioleptic.compress_signal(x_counts, options)
        t1 = time.perf_counter()
        bioleptic.decompress_signal(data)
        t2 = time.perf_counter()
        best_enc, best_dec = min(best_enc, t1 - t0), min(best_dec, t2 - t1)
    return x_counts.size / best_enc, x_counts.size / best_dec
