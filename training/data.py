"""Training data: fixed-length windows of a signal, z-scored per window, split in time order."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["WindowSet", "make_windows", "paper_splits", "record_splits", "time_splits"]

log = logging.getLogger(__name__)

PAPER_SAMPLES = 12000
PAPER_WINDOW = 1000
PAPER_BOUNDS = (0, 6000, 8000, 12000)


@dataclass(frozen=True, eq=False)
class WindowSet:
    """Windows (N, L) as the model sees them, and the statistics that restore their units."""

    windows: npt.NDArray[np.float32]
    means: npt.NDArray[np.float64]
    stds: npt.NDArray[np.float64]
    start_samples: npt.NDArray[np.int64]
    dropped_missing: int = 0
    dropped_flat: int = 0

    def __post_init__(self) -> None:
        n = self.windows.shape[0]
        if self.windows.ndim != 2 or not n == self.means.size == self.stds.size:
            raise ValueError("windows, means and stds disagree in count")

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    @property
    def length(self) -> int:
        return int(self.windows.shape[1])

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.from_numpy(self.windows).unsqueeze(1).to(device)  # (N, 1, L)


def make_windows(
    signal: npt.ArrayLike, length: int, *, zscore: bool = True, offset: int = 0
) -> WindowSet:
    """Non-overlapping windows of `length`; the remainder is dropped. Windows holding a missing
    sample (NaN) or a constant (std 0) are dropped, counted and logged, never trained on.
    z-scoring uses the unbiased std, as torch's default does in the paper's code."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"signal must be 1-D, got shape {x.shape}")
    if length < 1:
        raise ValueError(f"window length must be positive, got {length}")
    count = x.size // length
    rows = x[: count * length].reshape(count, length)  # (N, L)
    starts = offset + np.arange(count, dtype=np.int64) * length
    missing = np.isnan(rows).any(axis=1)
    means = rows.mean(axis=1) if zscore else np.zeros(count)
    stds = rows.std(axis=1, ddof=1) if zscore and length > 1 else np.ones(count)
    flat = ~missing & (stds == 0)
    keep = ~missing & ~flat
    if missing.any() or flat.any():
        log.warning(
            "dropped %d windows with missing samples and %d constant windows of %d",
            int(missing.sum()), int(flat.sum()), count,
        )  # fmt: skip
    normalized = (rows[keep] - means[keep, None]) / stds[keep, None]
    return WindowSet(
        windows=normalized.astype(np.float32),
        means=means[keep],
        stds=stds[keep],
        start_samples=starts[keep],
        dropped_missing=int(missing.sum()),
        dropped_flat=int(flat.sum()),
    )


def paper_splits(signal: npt.ArrayLike) -> dict[str, WindowSet]:
    """The paper's Physionet protocol: the first 12000 samples, train/val/test = 6/2/4 windows of
    1000 samples in time order, each z-scored."""
    x = np.asarray(signal, dtype=np.float64)
    if x.size < PAPER_SAMPLES:
        raise ValueError(f"the paper's protocol needs {PAPER_SAMPLES} samples, got {x.size}")
    names = ("train", "val", "test")
    bounds = itertools.pairwise(PAPER_BOUNDS)
    return {
        name: make_windows(x[lo:hi], PAPER_WINDOW, offset=lo)
        for name, (lo, hi) in zip(names, bounds, strict=True)
    }


def time_splits(
    signal: npt.ArrayLike,
    length: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    *,
    normalization: str = "window",
) -> dict[str, WindowSet]:
    """Train/val/test windows from consecutive stretches of one signal, in time order.

    normalization "window" z-scores each window (the paper); "global" removes each window's mean
    and divides by the training stretch's std (the codec's: one scale per recording, the mean
    travelling as the block offset)."""
    x = np.asarray(signal, dtype=np.float64)
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(
            f"fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    if normalization not in ("window", "global"):
        raise ValueError(f"normalization must be window or global, got {normalization!r}")
    cuts = np.round(np.cumsum((0.0, *fractions)) * x.size).astype(int)
    scale = float(np.nanstd(x[: cuts[1]])) if normalization == "global" else 1.0
    if not scale > 0:
        raise ValueError("the training stretch is constant or empty: nothing to learn")
    out: dict[str, WindowSet] = {}
    for name, lo, hi in zip(("train", "val", "test"), cuts[:-1], cuts[1:], strict=True):
        ws = make_windows(x[lo:hi], length, zscore=normalization == "window", offset=int(lo))
        if normalization == "global":
            ws = _centre(ws, scale)
        if len(ws) == 0 and fractions[len(out)] > 0:
            raise ValueError(f"the {name} split has no whole {length}-sample window")
        out[name] = ws
    return out


def _centre(ws: WindowSet, scale: float) -> WindowSet:
    """Raw windows -> each minus its mean, divided by one global scale."""
    means = ws.windows.astype(np.float64).mean(axis=1)
    windows = (ws.windows - means[:, None]) / scale
    return WindowSet(
        windows=windows.astype(np.float32), means=means, stds=np.full(len(ws), scale),
        start_samples=ws.start_samples, dropped_missing=ws.dropped_missing, dropped_flat=ws.dropped_flat,
    )  # fmt: skip


def record_splits(
    signals: dict[str, npt.ArrayLike],
    assignment: dict[str, list[str]],
    length: int,
    *,
    normalization: str = "window",
) -> dict[str, WindowSet]:
    """Windows of whole recordings per split (e.g. train on some patients, test on others);
    with "global" normalization, one scale from the pooled training recordings."""
    unknown = {name for names in assignment.values() for name in names} - signals.keys()
    if unknown or set(assignment) != {"train", "val", "test"}:
        raise ValueError(
            f"assignment needs train/val/test over known recordings; unknown: {sorted(unknown)}"
        )
    if normalization not in ("window", "global"):
        raise ValueError(f"normalization must be window or global, got {normalization!r}")
    pooled = np.concatenate([np.asarray(signals[n], dtype=np.float64) for n in assignment["train"]])
    scale = float(np.nanstd(pooled)) if normalization == "global" else 1.0
    out = {}
    for split, names in assignment.items():
        parts = [make_windows(signals[n], length, zscore=normalization == "window") for n in names]
        if normalization == "global":
            parts = [_centre(p, scale) for p in parts]
        out[split] = _concat(parts)
    return out


def _concat(parts: list[WindowSet]) -> WindowSet:
    return WindowSet(
        windows=np.concatenate([p.windows for p in parts]).astype(np.float32),
        means=np.concatenate([p.means for p in parts]),
        stds=np.concatenate([p.stds for p in parts]),
        start_samples=np.concatenate([p.start_samples for p in parts]),
        dropped_missing=sum(p.dropped_missing for p in parts),
        dropped_flat=sum(p.dropped_flat for p in parts),
    )
