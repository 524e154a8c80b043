"""gRPC serving benchmark: `PYTHONPATH=. python bench/serving.py [--streams 1,16,256,1024,2048] [--duration 20] [--write-docs]`.

The in-process compute limit first (nothing else running), then a one-worker and a two-worker
server and the echo, each in its own process: at each level, real-time streams and full speed
against both servers, and the echo. bench/serving_load.py drives them; bench/serving_report.py
writes the tables and the verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import onnxruntime
import wfdb

from bench.serving_load import (
    CHANNELS,
    REPO,
    Proc,
    Signal,
    Source,
    _config,
    echo_server,
    echo_speed,
    free_port,
    full_speed,
    realtime,
    spawn,
    typical_block,
)  # fmt: skip
from bench.serving_report import COMPUTE_STEPS, Compute, Row, _errors, report, write_docs
from server.config import ServerConfig
from server.repository import LoadedModel, ModelRepository
from server.sessions import EncodeSession
from server.telemetry import Telemetry

# ---------------------------------------------------------------- in-process compute limit


def _detect_batched(model: LoadedModel, windows: list[Any], max_batch: int) -> list[Any]:
    """Spikes of every window, in batches of up to max_batch windows of one length."""
    spikes: list[Any] = [None] * len(windows)
    for length in sorted({w.samples.size for w in windows}):
        same = [i for i, w in enumerate(windows) if w.samples.size == length]
        for lo in range(0, len(same), max_batch):
            rows = same[lo : lo + max_batch]
            found = model.detect(np.stack([windows[i].samples for i in rows])[:, None, :])
            for i, s in zip(rows, found, strict=True):
                spikes[i] = s
    return spikes


def _compute_once(model: LoadedModel, session: EncodeSession, x: Signal, max_batch: int
                  ) -> dict[str, float]:  # fmt: skip
    """One whole stream through the server's own session: each step timed."""
    t = [time.perf_counter()]
    coder = session.coder
    windows = [a + b for a, b in zip(coder.push(x.T), coder.finish(), strict=True)]
    flat = coder.to_detect(windows)
    t.append(time.perf_counter())
    spikes = _detect_batched(model, flat, max_batch)
    t.append(time.perf_counter())
    blocks = coder.accept(windows, spikes)
    t.append(time.perf_counter())
    for block in blocks:  # what the server answers per block
        session._respond(block, t[-1])
    t.append(time.perf_counter())
    return {step: t[i + 1] - t[i] for i, step in enumerate(COMPUTE_STEPS)}


def compute_limit(source: Source, args: argparse.Namespace) -> tuple[Compute, int, int]:
    """The compute limit, and the ecg model's block length and context."""
    repository = ModelRepository(args.models, "auto", args.threads)
    repository.load()
    model = repository.get("ecg")
    x = source.frames[: args.compute_blocks * model.manifest.block_length]
    runs = []
    for _ in range(args.repeats):
        config = _config(fixed_kernels=True).config  # coding alone: a check is not coding
        # no batcher and no codec threads: the steps are called here, one after the other
        session = EncodeSession(config, repository, ServerConfig(), cast(Any, None), Telemetry(),
                                cast(Any, None))  # fmt: skip
        runs.append(_compute_once(model, session, x, args.max_batch))
    seconds = {step: statistics.median(r[step] for r in runs) for step in COMPUTE_STEPS}
    return Compute(x.size, seconds), model.manifest.block_length, model.manifest.context


# ---------------------------------------------------------------- main


def _load(data: Path) -> Source:
    record = wfdb.rdrecord(str(data / "wfdb" / "mitdb" / "100"))
    return Source(np.ascontiguousarray(record.p_signal[:, :CHANNELS], dtype=np.float32))


def _meta(provider: str, block_bytes: int, load: str) -> dict[str, str]:
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    versions = f"grpcio {grpc.__version__}, onnxruntime {onnxruntime.__version__}"
    return {
        "date": time.strftime("%Y-%m-%d"), "cores": cores, "provider": provider, "load": load,
        "machine": f"{platform.platform()} ({platform.machine()}, nproc {cores}), Python "
                   f"{platform.python_version()}, {versions}",
        "block_bytes": str(block_bytes),
        "command": shlex.join(["PYTHONPATH=.", "python", "bench/serving.py", *sys.argv[1:]]),
    }  # fmt: skip


def _server_argv(args: argparse.Namespace, workers: int) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        flags = f"--host 127.0.0.1 --port {port} --metrics-port {free_port()} --grace-s 1"
        flags += f" --max-batch {args.max_batch} --threads {args.threads} --workers {workers}"
        # every stream comes from loopback here, where devices would be many peers
        flags += " --max-streams-per-peer 4096"
        return ["-m", "server", "--models", str(args.models), *flags.split()]

    return argv


def _echo_argv(block: Path) -> Callable[[int], list[str]]:
    script = str(Path(__file__).resolve())
    return lambda port: [script, "--echo-server", str(port), "--echo-response", str(block)]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _start(stack: contextlib.AsyncExitStack, argv: Callable[[int], list[str]], log: Path
                 ) -> Proc:  # fmt: skip
    proc = await spawn(argv, log)
    stack.callback(proc.stop)
    return proc


async def _measure(servers: dict[str, Proc], echo: Proc, source: Source, args: argparse.Namespace
                   ) -> tuple[list[Row], list[Row]]:  # fmt: skip
    """Each level: real time against every server, then the echo and every server at full speed.
    The largest level's real time runs --top-repeats times, the servers taking turns."""
    top, realtime_rows, full_rows = max(args.streams), [], []
    labels = list(servers)
    for n in args.streams:
        repeats = args.top_repeats if n == top else 1
        for k in range(repeats):
            for label in labels:
                name = f"{label} #{k + 1}" if repeats > 1 else label
                _say(f"{n} streams, server {name}: real time for {args.duration:g} s ...")
                phase = await realtime(servers[label], source, n, args)
                _say(f"  p99 {phase.ms(99, phase.live):.1f} ms, errors {_errors(phase)}")
                for detail, count in phase.details.most_common():
                    _say(f"    {count} x {detail}")
                realtime_rows.append(Row(n, name, phase))
        echo_phase = await echo_speed(echo, source, n, args)
        for label in labels:
            phase = await full_speed(servers[label], source, n, args)
            _say(f"{n} streams, server {label}, full speed: {phase.samples_per_s / 1e6:.3f} "
                 f"Msamples/s, echo {echo_phase.samples_per_s / 1e6:.1f}")  # fmt: skip
            full_rows.append(Row(n, label, phase, echo_phase))
    return realtime_rows, full_rows


async def run(args: argparse.Namespace) -> str:
    """Compute limit first (nothing else running), then the servers and the echo, each in its own
    process (all started up front; an idle one costs nothing)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    source = _load(args.data)
    _say("in-process compute limit ...")
    compute, args.block_length, args.context = compute_limit(source, args)
    with contextlib.ExitStack() as keep:
        logs = args.logs or Path(keep.enter_context(tempfile.TemporaryDirectory()))
        logs.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            server = await _start(stack, _server_argv(args, 1), logs / "server.log")
            servers, rss = {"1 worker": server}, {"rss_start": server.rss_mib()}
            size, provider = await typical_block(server, source, logs / "block.bin")
            if args.variant_workers > 1:
                argv = _server_argv(args, args.variant_workers)
                servers[f"{args.variant_workers} workers"] = await _start(stack, argv, logs / "v.log")  # fmt: skip
            echo = await _start(stack, _echo_argv(logs / "block.bin"), logs / "echo.log")
            for proc in (echo, *servers.values()):
                await full_speed(proc, source, 16, args)  # warm-ups
            rss["rss_idle"] = servers["1 worker"].rss_mib()
            realtime_rows, full_rows = await _measure(servers, echo, source, args)
            rss["rss_end"] = servers["1 worker"].rss_mib()
    meta = _meta(provider, size, load) | {k: f"{v:.0f}" for k, v in rss.items()}
    meta["workers"] = str(args.variant_workers)
    return report(realtime_rows, full_rows, compute, meta, args)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    add = p.add_argument
    add(
        "--streams", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 256, 1024, 2048]
    )
    add("--duration", type=float, default=20.0, help="real-time seconds per stream")
    add("--stagger", type=float, default=None, help="spread of stream starts, s (default a block)")
    add("--full-frames", type=int, default=8192, help="full-speed frames per stream, at least")
    add("--full-total", type=int, default=1 << 22, help="full-speed frames per level, at least")
    add("--echo-seconds", type=float, default=2.0, help="repeat the echo phase this long")
    add("--compute-blocks", type=int, default=256, help="blocks per channel for the compute limit")
    add("--repeats", type=int, default=5, help="compute-limit repeats (median)")
    add("--max-batch", type=int, default=64, help="the server's --max-batch, and the compute's")
    add("--threads", type=int, default=0, help="the server's ORT intra-op threads (0: ORT picks)")
    add("--variant-workers", type=int, default=2,
        help="every level also against a server with this many --workers; 1: skip")  # fmt: skip
    add("--top-repeats", type=int, default=2, help="real-time runs of the largest level")
    add("--fixed-kernels", action="store_true",
        help="the load's streams keep the model's kernels (no stream adapts): a control")  # fmt: skip
    add("--models", type=Path, default=REPO / "models")
    add("--data", type=Path, default=REPO.parent / "shared" / "data")
    add("--write-docs", action="store_true", help="append the results to docs/benchmarks.md")
    add("--logs", type=Path, default=None,
        help="keep the servers' logs in this folder (default: a temporary one, deleted)")  # fmt: skip
    add("--echo-server", type=int, default=None, metavar="PORT", help="only run the echo server")
    add("--echo-response", type=Path, default=None, help="its block answer, serialized")
    add("--echo-bytes", type=int, default=1200, help="its stand-in block's size, without one")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.echo_server is not None:
        asyncio.run(echo_server(args.echo_server, args.echo_response, args.echo_bytes))
        return 0
    text = asyncio.run(run(args))
    print(text)
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
