"""Kernel-size, activation and kernel-count sweeps, chosen on validation; with their figures."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tqdm import tqdm

from training.data import WindowSet
from training.reports import save_figure, write_run
from training.train import FitResult, TrainConfig, evaluate, fit

__all__ = ["plot_flithos_vs_size", "plot_tradeoff", "sweep"]


def plot_tradeoff(rows: Sequence[dict[str, Any]], path: Path, split: str = "test") -> None:
    """CR^-1 against L~ for every run, with the paper's regions: phi < 1 is the good quarter-disc."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.axvspan(2, 3, color="0.9", label="CR⁻¹ ≥ 2: not sparse")
    ax.add_patch(plt.Circle((0, 0), 1, fill=False, ls="--", color="0.5"))
    for activation in sorted({r["activation"] for r in rows}):
        mine = [r[split] for r in rows if r["activation"] == activation]
        ax.scatter(
            [s["inverse_compression_ratio"] for s in mine],
            [s["normalized_loss"] for s in mine],
            s=10,
            label=activation,
        )
    ax.set(
        xlim=(0, 2.5),
        ylim=(0, 1.2),
        xlabel="CR⁻¹",
        ylabel="L̃",
        title=f"{split} split: rate against loss",
    )
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_flithos_vs_size(rows: Sequence[dict[str, Any]], path: Path, split: str = "test") -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for activation in sorted({r["activation"] for r in rows}):
        mine = sorted((r["m"], r[split]["flithos"]) for r in rows if r["activation"] == activation)
        ax.plot([m for m, _ in mine], [f for _, f in mine], marker=".", lw=0.8, label=activation)
    ax.set(xlabel="kernel size m", ylabel="φ̄", yscale="log", title=f"φ̄ on the {split} split")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def sweep(
    base: TrainConfig,
    splits: dict[str, WindowSet],
    sizes: Sequence[int],
    activations: Sequence[str],
    counts: Sequence[int],
    out: Path,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Fit every (activation, size, count); the best on validation is written as a full run."""
    out.mkdir(parents=True, exist_ok=True)
    rows, best = [], None
    grid = list(itertools.product(activations, sizes, counts))
    for activation, m, q in tqdm(grid, desc="sweep", unit="run"):
        config = replace(base, activation=activation, kernel_sizes=(m,) * q)
        result = fit(config, splits["train"], splits["val"])
        rows.append({"activation": activation, "m": m, "q": q, "best_epoch": result.best_epoch,
                     "val": result.validation, "test": evaluate(result.model, splits["test"])})  # fmt: skip
        if best is None or result.validation[base.select] < best.validation[base.select]:
            best = result
        with (out / "sweep.jsonl").open("a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
    assert isinstance(best, FitResult)
    plot_tradeoff(rows, out / "tradeoff.png")
    plot_flithos_vs_size(rows, out / "flithos_vs_size.png")
    report = write_run(
        best, out / "best", splits["test"], {**extra, "chosen_on": f"validation {base.select}"}
    )
    return {"runs": len(rows), "best": {"config": report["config"], "test": report["test"]}}
