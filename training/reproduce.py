"""The paper's Physionet protocol on every dataset we have, with its Table I beside our numbers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from recordings import read_recording
from training.activations import Activation
from training.data import PAPER_SAMPLES, paper_splits
from training.train import TrainConfig, evaluate, fit

__all__ = ["DATASETS", "PAPER_TABLE", "reproduce", "write_table"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str  # relative to the data root
    record: str


# The first record of each of the paper's databases that ../shared/data holds.
DATASETS = (
    Dataset("apnea-ecg", "wfdb/apnea-ecg/a01.hea", "a01"),
    Dataset("bidmc", "csv/bidmc/bidmc_01_Signals.csv", "bidmc01 (CSV)"),
    Dataset("ctu-uhb-ctgdb", "wfdb/ctu-uhb-ctgdb/1001.hea", "1001"),
    Dataset("emgdb", "wfdb/emgdb/emg_healthy.hea", "emg_healthy"),
    Dataset("mitdb", "wfdb/mitdb/100.hea", "100"),
)

# Table I of the paper (thesis run), test set, q = 1: (m, CR^-1, L~, phi) per activation.
PAPER_TABLE: dict[str, dict[str, tuple[int, float, float, float]]] = {
    "apnea-ecg": {"identity": (1, 2.00, 0.03, 2.00), "relu": (19, 0.70, 0.53, 0.87), "topk_absolutes": (74, 0.10, 0.37, 0.39), "extrema_pool_indices": (51, 0.09, 0.47, 0.48), "extrema": (72, 0.10, 0.31, 0.32)},
    "bidmc": {"identity": (1, 2.00, 0.04, 2.00), "relu": (4, 0.82, 0.50, 0.96), "topk_absolutes": (5, 0.41, 0.64, 0.76), "extrema_pool_indices": (10, 0.21, 0.24, 0.32), "extrema": (113, 0.13, 0.30, 0.32)},
    "ctu-uhb-ctgdb": {"identity": (1, 2.00, 0.01, 2.00), "relu": (1, 0.48, 0.51, 0.71), "topk_absolutes": (7, 0.29, 0.60, 0.66), "extrema_pool_indices": (9, 0.23, 0.44, 0.49), "extrema": (45, 0.07, 0.57, 0.57)},
    "emgdb": {"identity": (1, 2.00, 0.04, 2.00), "relu": (1, 0.94, 0.50, 1.07), "topk_absolutes": (7, 0.29, 0.62, 0.68), "extrema_pool_indices": (9, 0.23, 0.48, 0.53), "extrema": (7, 0.15, 0.51, 0.53)},
    "mitdb": {"identity": (1, 2.00, 0.03, 2.00), "relu": (61, 0.78, 0.49, 0.92), "topk_absolutes": (7, 0.29, 0.52, 0.59), "extrema_pool_indices": (10, 0.21, 0.44, 0.49), "extrema": (229, 0.24, 0.38, 0.45)},
}  # fmt: skip


def _paper_config(activation: str, m: int, seed: int) -> TrainConfig:
    """san.md section 3: q=1, 30 epochs, batch 2, Adam 0.01, MAE, N(0, 0.1), correlation decoder."""
    return TrainConfig(
        kernel_sizes=(m,), activation=activation, decoder_mode="correlation", border_tolerance=3,
        loss="mae", init="normal", epochs=30, batch_size=2, lr=0.01, seed=seed,
    )  # fmt: skip


def _done(results: Path) -> set[tuple[str, str, int]]:
    if not results.exists():
        return set()
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {(r["dataset"], r["activation"], r["m"]) for r in rows}


def reproduce(
    data_root: Path, sizes: Iterable[int], activations: Iterable[str], results: Path, seed: int = 0
) -> None:
    """Train every (dataset, activation, m) not yet in `results` (JSON lines, appended as each
    run ends, so an interrupted reproduction resumes where it stopped)."""
    done = _done(results)
    jobs = [
        (d, a, m)
        for d in DATASETS
        for a in activations
        for m in sizes
        if (d.name, a, m) not in done
    ]
    results.parent.mkdir(parents=True, exist_ok=True)
    signals: dict[str, Any] = {}
    for dataset, activation, m in tqdm(jobs, desc="reproduce", unit="run"):
        if dataset.name not in signals:
            recording = read_recording(data_root / dataset.path, sampto=PAPER_SAMPLES)
            signals[dataset.name] = paper_splits(recording.samples[0])
        splits = signals[dataset.name]
        result = fit(_paper_config(activation, m, seed), splits["train"], splits["val"])
        row = {
            "dataset": dataset.name, "activation": activation, "m": m, "best_epoch": result.best_epoch,
            "val": result.validation, "test": evaluate(result.model, splits["test"]),
        }  # fmt: skip
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _cell(row: dict[str, Any], split: str) -> str:
    s = row[split]
    return f"{row['m']}/{s['inverse_compression_ratio']:.2f}/{s['normalized_loss']:.2f}/{s['flithos']:.2f}"


def write_table(results: Path, out: Path, command: str) -> str:
    """Markdown: per dataset and activation, the paper's cell, ours with m chosen on validation
    (honest), and ours with m chosen on test (the paper's code did that)."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    lines = [
        "| dataset | activation | paper m/CR⁻¹/L̃/φ̄ | ours, m on validation | ours, m on test (paper's rule) | φ̄ gap (test rule) |",
        "|---|---|---|---|---|---|",
    ]
    for dataset in DATASETS:
        for activation in Activation:
            mine = [
                r
                for r in rows
                if r["dataset"] == dataset.name and r["activation"] == activation.value
            ]
            if not mine:
                continue
            by_val = min(mine, key=lambda r: r["val"]["flithos"])
            by_test = min(mine, key=lambda r: r["test"]["flithos"])
            paper = PAPER_TABLE[dataset.name][activation.value]
            gap = by_test["test"]["flithos"] - paper[3]
            lines.append(
                f"| {dataset.name} | {activation.value} | {paper[0]}/{paper[1]:.2f}/{paper[2]:.2f}/{paper[3]:.2f} "
                f"| {_cell(by_val, 'test')} | {_cell(by_test, 'test')} | {gap:+.2f} |"
            )
    sizes = sorted({r["m"] for r in rows})
    body = "\n".join(lines)
    text = f"Command: `{command}`\n\nKernel sizes tried: {len(sizes)} ({sizes[0]}..{sizes[-1]}).\n\n{body}\n"
    out.write_text(text)
    return text


def plot_reproduction(results: Path, out_dir: Path) -> list[Path]:
    """Per dataset: phi against kernel size, and CR^-1 against L~, on the test split."""
    from training.sweep import plot_flithos_vs_size, plot_tradeoff

    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    written = []
    for dataset in DATASETS:
        mine = [r for r in rows if r["dataset"] == dataset.name]
        if mine:
            for name, plot in (
                ("flithos_vs_size", plot_flithos_vs_size),
                ("tradeoff", plot_tradeoff),
            ):
                path = out_dir / f"{dataset.name}-{name}.png"
                plot(mine, path)
                written.append(path)
    return written
