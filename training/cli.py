"""`sancodec-train` (= `python -m training`): fit one configuration, or reproduce the paper."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from client.recordings import read_recording
from sancodec.errors import SancodecError
from training.activations import Activation
from training.data import paper_splits, time_splits
from training.reports import write_run
from training.reproduce import reproduce, write_table
from training.train import TrainConfig, fit

__all__ = ["main"]

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_sizes(text: str) -> list[int]:
    """ "64", "32,64,128" or a range "1:250" (end excluded) or "1:250:8"."""
    if ":" in text:
        parts = [int(p) for p in text.split(":")]
        return list(range(*parts))
    return [int(p) for p in text.split(",") if p]


def _fit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fit", help="train one configuration on one recording")
    p.add_argument("recording", type=Path, help="WFDB .hea, EDF, CSV, NPY or Bonn .txt")
    p.add_argument("--channel", default="0", help="channel index or name (default 0)")
    p.add_argument("--sample-rate-hz", type=float, help="needed for NPY and CSV without time")
    p.add_argument("--paper-split", action="store_true", help="the paper's 12000-sample protocol")
    p.add_argument("--window", type=int, default=2048, help="window length in samples")
    p.add_argument(
        "--kernel-sizes", type=parse_sizes, default=[64], help='e.g. "256" or "64,64,128"'
    )
    p.add_argument("--activation", choices=[a.value for a in Activation], default="extrema")
    p.add_argument("--decoder", choices=["adjoint", "correlation"], default="adjoint")
    p.add_argument("--loss", choices=["mae", "mse"], default="mae")
    p.add_argument("--init", choices=["normal", "ones", "data"], default="normal")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=Path("runs/fit"))


def _reproduce_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reproduce", help="the paper's Physionet protocol and Table I")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(range(1, 250)),
        help='kernel sizes, e.g. "1:250:8"',
    )
    p.add_argument("--activations", default=",".join(a.value for a in Activation))
    p.add_argument("--results", type=Path, default=Path("runs/reproduce/results.jsonl"))
    p.add_argument("--table", type=Path, default=Path("runs/reproduce/table.md"))


def run_fit(args: argparse.Namespace) -> int:
    channel = int(args.channel) if args.channel.isdigit() else args.channel
    recording = read_recording(
        args.recording, sample_rate_hz=args.sample_rate_hz, channels=[channel]
    )
    signal = recording.samples[0]
    splits = paper_splits(signal) if args.paper_split else time_splits(signal, args.window)
    config = TrainConfig(
        kernel_sizes=tuple(args.kernel_sizes), activation=args.activation, decoder_mode=args.decoder,
        loss=args.loss, init=args.init, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, restarts=args.restarts, device=args.device,
    )  # fmt: skip
    result = fit(config, splits["train"], splits["val"], progress=sys.stderr.isatty())
    extra = {
        "data": {
            "recording": str(args.recording),
            "channel": args.channel,
            "sample_rate_hz": recording.sample_rate_hz,
        },
        "windows": {name: len(ws) for name, ws in splits.items()},
        "dropped_windows": {
            name: ws.dropped_missing + ws.dropped_flat for name, ws in splits.items()
        },
    }
    report = write_run(result, args.out, splits["test"], extra)
    print(json.dumps({"best_epoch": report["best_epoch"], "test": report["test"]}, indent=2))
    print(f"wrote {args.out}/report.json, checkpoint.pt, kernels.png, reconstruction.png")
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    activations = [Activation(a).value for a in args.activations.split(",")]
    reproduce(args.data, args.sizes, activations, args.results)
    command = "python -m training " + shlex.join(sys.argv[1:])
    print(write_table(args.results, args.table, command))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sancodec-train", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(sub)
    _reproduce_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return run_fit(args) if args.command == "fit" else run_reproduce(args)
    except (ValueError, OSError, SancodecError) as exc:
        print(f"sancodec-train: error: {exc}", file=sys.stderr)
        return 2
