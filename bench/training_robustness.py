"""Does training find the beat on every MIT-BIH record? Random starts vs data init + restarts.

`python bench/training_robustness.py [--data ../shared/data] [--out docs/training-robustness.md]`
One 256-sample kernel, Extrema, adjoint decoder, MSE; the first 5 minutes of channel 0 in
2048-sample windows, 60/20/20 in time order, one scale per recording (the codec's normalization);
epoch and restart chosen on validation PRDN, test PRDN reported.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import torch

from recordings import read_recording
from training.data import time_splits
from training.train import TrainConfig, evaluate, fit

SAMPLES = 108000  # 5 minutes at 360 Hz
VARIANTS = (("random, seed 0", "normal", 0, 1), ("random, seed 1", "normal", 1, 1),
            ("random, seed 2", "normal", 2, 1), ("data init", "data", 0, 1),
            ("data init, 3 restarts", "data", 0, 3), ("mixed, 4 restarts", "mixed", 0, 4))  # fmt: skip


def measure(record: Path) -> list[float]:
    signal = read_recording(record, sampto=SAMPLES).samples[0]
    splits = time_splits(signal, 2048, normalization="global")
    out = []
    for _, init, seed, restarts in VARIANTS:
        config = TrainConfig(
            kernel_sizes=(256,), activation="extrema", decoder_mode="adjoint", loss="mse", init=init,
            seed=seed, restarts=restarts, epochs=30, batch_size=4, select="prdn_percent",
        )  # fmt: skip
        result = fit(config, splits["train"], splits["val"])
        out.append(evaluate(result.model, splits["test"])["prdn_percent"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/training-robustness.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    lines = [
        "| record | " + " | ".join(v[0] for v in VARIANTS) + " |",
        "|---" * (len(VARIANTS) + 1) + "|",
    ]
    for header in sorted((args.data / "wfdb" / "mitdb").glob("*.hea")):
        prdn = measure(header)
        lines.append(f"| {header.stem} | " + " | ".join(f"{p:.1f}" for p in prdn) + " |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    args.out.write_text(
        f"# Training robustness on MIT-BIH\n\n{__doc__}\nTest PRDN in % (lower is better). "
        f"Measured {date.today()} on {platform.machine()} ({torch.get_num_threads()} thread), "
        f"{time.time() - started:.0f} s, with `python bench/training_robustness.py`.\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
