"""The paper's metric side by side: Table I's SAN rows next to a fixed wavelet's φ̄ on the same windows.

From the repository root: `PYTHONPATH=. python bench/paper_metric.py` (also run by `make bench`).

The windows are those of the Table I reproduction (`training.reproduce`, san.md §3): the first
12000 samples of channel 0 of each dataset, 6 / 2 / 4 z-scored windows of 1000 samples for train,
validation and test. The SAN rows come from docs/reproduction/results.jsonl.gz (our runs) and
`training.reproduce.PAPER_TABLE` (the paper's). The wavelet is fixed, not learned: bior4.4,
level 5, periodization, and each window keeps its k largest coefficients, exact (unquantized, as
the SAN's amplitudes are in the paper's metric). In the paper's accounting (sancodec.metrics)
each kept coefficient costs an index and an amplitude, like a spike, and the wavelet has no
weights to send: CR⁻¹ = 2k / n, L̃ = Σ|x − x̂| / Σ|x|, φ = √(CR⁻² + L̃²), φ̄ the mean over windows.
k plays the part of the kernel size m: it is chosen per dataset, on validation (honest) and on
test (the paper's rule).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pywt

from recordings import read_recording
from sancodec.metrics import flithos, inverse_compression_ratio, normalized_loss
from training.data import PAPER_SAMPLES, paper_splits
from training.reproduce import DATASETS, PAPER_TABLE

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "docs" / "reproduction" / "results.jsonl.gz"
WAVELET, LEVEL, MODE = "bior4.4", 5, "periodization"
MAX_K = 250  # CR⁻¹ up to 0.5: beyond the sparse quarter of every Table I row
SAN_ROWS = ("topk_absolutes", "extrema_pool_indices", "extrema")

__all__ = ["main", "report", "wavelet_scores"]


def _keep_largest(x: npt.NDArray[np.float64], ks: range) -> npt.NDArray[np.float64]:
    """(len(ks), 2) mean-free L̃ and CR⁻¹ of x coded with its k largest wavelet coefficients."""
    coeffs = pywt.wavedec(x, WAVELET, mode=MODE, level=LEVEL)
    flat, slices = pywt.coeffs_to_array(coeffs)
    order = np.argsort(-np.abs(flat), kind="stable")
    out = np.empty((len(ks), 2))
    for i, k in enumerate(ks):
        kept = np.zeros_like(flat)
        kept[order[:k]] = flat[order[:k]]
        parts = pywt.array_to_coeffs(kept, slices, output_format="wavedec")
        x_hat = pywt.waverec(parts, WAVELET, mode=MODE)[: x.size]
        out[i] = normalized_loss(x, x_hat), inverse_compression_ratio(k, 0, x.size)
    return out


def wavelet_scores(windows: npt.NDArray[np.float32], ks: range) -> npt.NDArray[np.float64]:
    """(len(ks), 3): mean CR⁻¹, mean L̃ and φ̄ over the windows, for every k."""
    per_window = np.stack([_keep_largest(w.astype(np.float64), ks) for w in windows])
    loss, inv_cr = per_window[..., 0], per_window[..., 1]
    phi = np.vectorize(flithos)(inv_cr, loss)
    return np.stack([inv_cr.mean(0), loss.mean(0), phi.mean(0)], axis=1)


def _our_san(rows: list[dict[str, Any]], dataset: str, activation: str) -> tuple[dict, dict]:
    """Our best run of (dataset, activation): m chosen on validation, and on test."""
    mine = [r for r in rows if r["dataset"] == dataset and r["activation"] == activation]
    by_val = min(mine, key=lambda r: r["val"]["flithos"])
    by_test = min(mine, key=lambda r: r["test"]["flithos"])
    return by_val, by_test


def _cell(m: int, s: dict[str, float]) -> str:
    return f"{m}/{s['inverse_compression_ratio']:.2f}/{s['normalized_loss']:.2f}/{s['flithos']:.2f}"


def report(data_root: Path = DATA, results: Path = RESULTS) -> str:
    with gzip.open(results, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    ks = range(1, MAX_K + 1)
    lines = [
        "| dataset | row | paper m/CR⁻¹/L̃/φ̄ | ours, m on validation | ours, m on test (paper's rule) |",
        "|---|---|---|---|---|",
    ]
    for d in DATASETS:
        recording = read_recording(data_root / d.path, sampto=PAPER_SAMPLES)
        splits = paper_splits(recording.samples[0])
        val = wavelet_scores(splits["val"].windows, ks)
        test = wavelet_scores(splits["test"].windows, ks)
        for activation in SAN_ROWS:
            m, inv_cr, loss, phi = PAPER_TABLE[d.name][activation]
            by_val, by_test = _our_san(rows, d.name, activation)
            lines.append(
                f"| {d.name} | SAN {activation} | {m}/{inv_cr:.2f}/{loss:.2f}/{phi:.2f} | "
                f"{_cell(by_val['m'], by_val['test'])} | {_cell(by_test['m'], by_test['test'])} |"
            )
        cells = []
        for chosen in (int(np.argmin(val[:, 2])), int(np.argmin(test[:, 2]))):
            inv_cr, loss, phi = test[chosen]
            cells.append(f"k={ks[chosen]}/{inv_cr:.2f}/{loss:.2f}/{phi:.2f}")
        lines.append(
            f"| {d.name} | **wavelet {WAVELET} L{LEVEL}, k largest** | – | {cells[0]} | {cells[1]} |"
        )
    return "\n".join(lines)


def main() -> int:
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
