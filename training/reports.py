"""Run reports: report.json, a checkpoint, and PNG figures of kernels and reconstructions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from training.data import WindowSet
from training.train import FitResult

__all__ = ["git_commit", "plot_kernels", "plot_reconstruction", "save_figure", "write_run"]


def git_commit() -> str:
    """The commit of the code that trained, with '+dirty' when it had uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def save_figure(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_kernels(result: FitResult, path: Path) -> None:
    """The kernels as the decoder paints them (flipped in correlation mode)."""
    codebook = result.model.codebook()
    fig, ax = plt.subplots(figsize=(7, 3))
    for i in range(len(codebook.kernels)):
        values, left = codebook.painted(i)
        ax.plot(np.arange(values.size) - left, values, label=f"kernel {i} (m={values.size})")
    ax.set(
        xlabel="samples from the spike",
        ylabel="weight",
        title=f"painted kernels ({codebook.decoder_mode})",
    )
    ax.legend(fontsize=7)
    save_figure(fig, path)


@torch.no_grad()
def plot_reconstruction(result: FitResult, windows: WindowSet, path: Path, index: int = 0) -> None:
    """One window, its reconstruction and the spikes that made it."""
    model = result.model.eval()
    device = next(model.parameters()).device
    x = windows.tensor(device)[index : index + 1]  # (1, 1, n)
    x_hat, alpha = model(x)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(x[0, 0].cpu(), lw=0.8, label="signal (z-scored)")
    ax.plot(x_hat[0, 0].cpu(), lw=0.8, label="reconstruction")
    for k in range(alpha.shape[1]):
        (where,) = np.nonzero(alpha[0, k].cpu().numpy())
        ax.plot(where, alpha[0, k].cpu().numpy()[where], "x", ms=5, label=f"spikes, kernel {k}")
    ax.set(xlabel="sample", title=f"window {index} of the test split")
    ax.legend(fontsize=7, loc="upper right")
    save_figure(fig, path)


def write_run(
    result: FitResult, out: Path, test: WindowSet, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write report.json, checkpoint.pt and figures to `out`; returns the report."""
    from training.train import evaluate

    out.mkdir(parents=True, exist_ok=True)
    report = {
        "config": result.config.to_dict(),
        "best_epoch": result.best_epoch,
        "restart": result.restart,
        "validation": result.validation,
        "test": evaluate(result.model, test),
        "history": result.history,
        "commit": git_commit(),
        **extra,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    torch.save(
        {"config": result.config.to_dict(), "state_dict": result.model.state_dict()},
        out / "checkpoint.pt",
    )
    plot_kernels(result, out / "kernels.png")
    plot_reconstruction(result, test, out / "reconstruction.png")
    return report
