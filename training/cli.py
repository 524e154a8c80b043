"""`sancodec-train` (= `python -m training`): fit one configuration, sweep a grid, reproduce the paper.

Data parallel: `torchrun --standalone --nproc-per-node 2 -m training fit REC --batch-size 4 ...`
(gloo on CPU, NCCL on GPUs); each rank takes an equal share of every batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist

from recordings import read_recording
from sancodec.errors import SancodecError
from training.activations import Activation
from training.config import DistributedEnv
from training.data import WindowSet, paper_splits, time_splits
from training.reports import write_run
from training.reproduce import plot_reproduction, reproduce, write_table
from training.sweep import sweep
from training.train import TrainConfig, fit

__all__ = ["main"]

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parse_sizes(text: str) -> list[int]:
    """ "64", "32,64,128" or a range "1:250" (end excluded) or "1:250:8"."""
    if ":" in text:
        parts = [int(p) for p in text.split(":")]
        return list(range(*parts))
    return [int(p) for p in text.split(",") if p]


def _fit_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str = "fit"
) -> argparse.ArgumentParser:
    helps = {
        "fit": "train one configuration on one recording",
        "sweep": "fit a grid, choose on validation",
    }
    p = sub.add_parser(name, help=helps[name])
    p.add_argument("recording", type=Path, help="WFDB .hea, EDF, CSV, NPY or Bonn .txt")
    p.add_argument("--channel", default="0", help="channel index or name (default 0)")
    p.add_argument("--sample-rate-hz", type=float, help="needed for NPY and CSV without time")
    p.add_argument("--paper-split", action="store_true", help="the paper's 12000-sample protocol")
    p.add_argument("--window", type=int, default=2048, help="window length in samples")
    p.add_argument(
        "--normalize",
        choices=["window", "global"],
        default="window",
        help="z-score per window (the paper) or one scale per recording (the codec)",
    )
    p.add_argument(
        "--kernel-sizes", type=parse_sizes, default=[64], help='e.g. "256" or "64,64,128"'
    )
    p.add_argument("--activation", choices=[a.value for a in Activation], default="extrema")
    p.add_argument("--decoder", choices=["adjoint", "correlation"], default="adjoint")
    p.add_argument("--loss", choices=["mae", "mse"], default="mae")
    p.add_argument(
        "--init", choices=["normal", "ones", "data", "mixed", "fan_in"], default="normal"
    )
    p.add_argument(
        "--select",
        choices=["flithos", "prdn_percent"],
        default="flithos",
        help="validation metric picking the epoch and restart",
    )
    p.add_argument(
        "--sparsifier",
        choices=["none", "ksparse"],
        default="none",
        help="replace the activation by a k-sparse layer",
    )
    p.add_argument("--ksparse-ratio", type=float, default=0.01)
    p.add_argument(
        "--regularizer",
        choices=["none", "l1", "l2", "student_t", "kl", "mean_target"],
        default="none",
    )
    p.add_argument("--regularizer-weight", type=float, default=0.0)
    p.add_argument("--target-rate", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=Path(f"runs/{name}"))
    return p


def _sweep_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _fit_parser(sub, "sweep")
    p.add_argument("--activations", default="extrema,extrema_pool_indices,topk_absolutes")
    p.add_argument("--kernel-counts", type=parse_sizes, default=[1])


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


def _start_distributed(env: DistributedEnv, device: str) -> str:
    """Join the process group torchrun set up; each rank gets its own GPU when there are GPUs."""
    use_cuda = device != "cpu" and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(env.local_rank)
        return f"cuda:{env.local_rank}"
    return "cpu"


def _data(args: argparse.Namespace) -> tuple[dict[str, WindowSet], dict[str, Any]]:
    channel = int(args.channel) if args.channel.isdigit() else args.channel
    recording = read_recording(
        args.recording, sample_rate_hz=args.sample_rate_hz, channels=[channel]
    )
    signal = recording.samples[0]
    if args.paper_split:
        splits = paper_splits(signal)
    else:
        splits = time_splits(signal, args.window, normalization=args.normalize)
    extra = {
        "data": {
            "recording": str(args.recording), "channel": args.channel,
            "sample_rate_hz": recording.sample_rate_hz,
            "normalization": "window" if args.paper_split else args.normalize,
        },
        "windows": {name: len(ws) for name, ws in splits.items()},
        "dropped_windows": {name: ws.dropped_missing + ws.dropped_flat for name, ws in splits.items()},
    }  # fmt: skip
    return splits, extra


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        kernel_sizes=tuple(args.kernel_sizes), activation=args.activation, decoder_mode=args.decoder,
        loss=args.loss, init=args.init, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, restarts=args.restarts, device=args.device, select=args.select,
        sparsifier=args.sparsifier, ksparse_ratio=args.ksparse_ratio, regularizer=args.regularizer,
        regularizer_weight=args.regularizer_weight, target_rate=args.target_rate,
    )  # fmt: skip


def run_fit(args: argparse.Namespace) -> int:
    env = DistributedEnv.from_env(os.environ)
    if env.launched:
        args.device = _start_distributed(env, args.device)
    report = None
    try:
        splits, extra = _data(args)
        result = fit(_config(args), splits["train"], splits["val"], progress=sys.stderr.isatty())
        if env.rank == 0:  # every rank holds the same model; rank 0 reports it
            report = write_run(result, args.out, splits["test"], extra)
        if env.launched:
            dist.barrier()  # no rank leaves the group while another still uses it
    finally:
        if env.launched:
            dist.destroy_process_group()
    if report is not None:
        print(json.dumps({"best_epoch": report["best_epoch"], "test": report["test"]}, indent=2))
        print(f"wrote {args.out}/report.json, checkpoint.pt, kernels.png, reconstruction.png")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    splits, extra = _data(args)
    activations = [Activation(a).value for a in args.activations.split(",")]
    grid = (args.kernel_sizes, activations, args.kernel_counts)
    summary = sweep(_config(args), splits, *grid, args.out, extra)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}/sweep.jsonl, tradeoff.png, flithos_vs_size.png and {args.out}/best/")
    return 0


def run_reproduce(args: argparse.Namespace) -> int:
    activations = [Activation(a).value for a in args.activations.split(",")]
    reproduce(args.data, args.sizes, activations, args.results)
    command = "python -m training " + shlex.join(sys.argv[1:])
    print(write_table(args.results, args.table, command))
    for path in plot_reproduction(args.results, args.table.parent):
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sancodec-train", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _fit_parser(sub)
    _sweep_parser(sub)
    _reproduce_parser(sub)
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    commands = {"fit": run_fit, "sweep": run_sweep, "reproduce": run_reproduce}
    try:
        return commands[args.command](args)
    except (ValueError, OSError, SancodecError) as exc:
        print(f"sancodec-train: error: {exc}", file=sys.stderr)
        return 2
