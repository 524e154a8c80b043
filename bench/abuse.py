"""Load and abuse suite against a real server on loopback: `python -m bench.abuse [--seconds S] [--live N]`.

Each scenario is bounded in time and count. Live real-time streams run beside the abusers; the
report gives their block latency (send of the chunk that completes a block to its code), health
Check latency, the server's RSS (now and peak, from /proc, its workers added up), and what each
abuser was told. The live streams come from 8 clients (connections); each abuser kind from one.
The server runs `--workers N` (default 0: one per core).
A block is 11.4 s of signal, and the first is final after 23.5 s; the live streams start spread
over one block (11.4 s): --seconds 50 (the default) gives each of them a latency figure or two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np

from bench.abuse_clients import (
    BLOCK,
    CODED,
    CONFIG,
    RATE_HZ,
    chunk,
    crowd_member,
    decode_bomb,
    fast_sender,
    health_probe,
    idle_holder,
    realtime,
    sanc_bombs,
    signal_of,
    slow_loris,
)
from bench.serving_load import OWN_CONNECTION, Proc, spawn
from sancodec.v1 import codec_pb2, codec_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
LIVE_CLIENTS = 8


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


ABUSERS = {  # name: (title, count, how one abuser is made from (stub, port, until, seconds))
    "none": ("baseline (live streams only)", 0, None),
    "fast": ("16 fast senders, 512 KiB chunks", 16, lambda s, p, u, t: fast_sender(s, u, 512 << 10)),
    "huge": ("1 fast sender, 4 MiB chunks", 1, lambda s, p, u, t: fast_sender(s, u, 4 << 20)),
    "idle": ("300 idle holders (config, then nothing)", 300, lambda s, p, u, t: idle_holder(s, True, t)),
    "silent": ("300 silent holders (no config)", 300, lambda s, p, u, t: idle_holder(s, False, t)),
    "loris": ("200 slow-loris connections", 1, lambda s, p, u, t: slow_loris(p, 200, t)),
    "crowd": ("a crowd of 1500 real-time streams arriving (per-peer cap lifted)", 1500,
              lambda s, p, u, t: crowd_member(s, u, t)),
    "bombs": ("8 decode bombs (2^26; 256 x 2^20)", 8,
              lambda s, p, u, t: decode_bomb(s, 1, 1 << 26) if random.random() < 0.5 else decode_bomb(s, 256, 1 << 20)),
}  # fmt: skip


async def abusers(name: str, address: str, port: int, seconds: float) -> dict[str, object]:
    """One kind of abuser, `count` of them on one channel: run in a process of its own."""
    _, count, make = ABUSERS[name]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        until = time.monotonic() + seconds
        results = await asyncio.gather(
            *(make(stub, port, until, seconds) for _ in range(count)), return_exceptions=True
        )
    return {"told": Counter(str(r) for r in results), "coded Msamples/s": CODED[0] / seconds / 1e6}


async def scenario(server: Proc, name: str, seconds: float, live: int) -> dict[str, object]:
    """`live` real-time streams and health probes here, the abusers in a separate process."""
    # abusers come over IPv6 loopback, the live streams over IPv4: two peers, as in production
    address = server.address
    command = [sys.executable, "-m", "bench.abuse", "--abuser", name, "--address", f"[::1]:{server.port}",
               "--port", str(server.port), "--seconds", str(seconds)]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*command, cwd=REPO, stdout=subprocess.PIPE)
    await asyncio.sleep(0.5)  # let them start
    # the live streams come from LIVE_CLIENTS clients (connections), as many devices would
    clients = [grpc.aio.insecure_channel(address, options=OWN_CONNECTION) for _ in range(LIVE_CLIENTS)]  # fmt: skip
    async with grpc.aio.insecure_channel(address) as channel:
        stubs = [codec_pb2_grpc.CodecServiceStub(c) for c in clients]
        until = time.monotonic() + seconds
        rt_lat: list[float] = []
        health_lat: list[float] = []
        peak = [0.0]

        async def watch_rss() -> None:
            while time.monotonic() < until + 1:
                peak[0] = max(peak[0], server.rss_mib())
                await asyncio.sleep(0.1)

        # devices connect independently, so their blocks end spread over a block's span, not
        # all at once: the starts are spread evenly over one block, as in bench/serving.py
        span = BLOCK / RATE_HZ
        tasks = [realtime(stubs[s % LIVE_CLIENTS], until, rt_lat, s, start_s=span * s / live)
                 for s in range(live)]  # fmt: skip
        tasks += [health_probe(channel, until, health_lat), watch_rss()]
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for c in clients:
        await c.close()
    out, _ = await process.communicate()
    report = json.loads(out or b"{}")
    told, coded = Counter(report.get("told", {})), report.get("coded Msamples/s", 0.0)
    return {"scenario": ABUSERS[name][0], "live p50 ms": _p(rt_lat, 50), "live p99 ms": _p(rt_lat, 99),
            "live streams": Counter(str(r) for r in results[:live]), "health p99 ms": _p(health_lat, 99),
            "health max ms": max(health_lat, default=0) * 1000, "rss peak MiB": peak[0], "abusers told": told,
            "abusers coded Msamples/s": coded}  # fmt: skip


def _start(log: Path, workers: int, *flags: str) -> Proc:
    """A server on a free port, on every address (IPv4 and IPv6 loopback are two peers)."""

    def argv(port: int) -> list[str]:
        return ["-m", "server", "--models", str(REPO / "models"), "--host", "[::]", "--port",
                str(port), "--metrics-port", "-1", "--workers", str(workers), *flags]  # fmt: skip

    return asyncio.run(spawn(argv, log))


async def _abuse(
    server: Proc, seconds: float, live: int, names: list[str]
) -> list[dict[str, object]]:
    await scenario(server, "none", 5.0, live)  # warm-up, not reported
    return [await scenario(server, name, seconds, live) for name in names]


async def sigterm_mid_stream(server: Proc) -> dict[str, object]:
    """A stream that sent 3000 samples, then SIGTERM: its blocks must come back, then UNAVAILABLE."""
    queue: asyncio.Queue[codec_pb2.EncodeRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        while (item := await queue.get()) is not None:
            yield item

    async with grpc.aio.insecure_channel(server.address) as channel:
        call = codec_pb2_grpc.CodecServiceStub(channel).Encode(requests())
        await queue.put(codec_pb2.EncodeRequest(config=CONFIG))
        await queue.put(chunk(signal_of(3000, 3)))
        await asyncio.sleep(1.0)
        server.popen.send_signal(signal.SIGTERM)
        samples, code, details = 0, "OK", ""
        try:
            async for response in call:
                if response.WhichOneof("payload") == "block":
                    samples += response.block.sample_count
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code().name, exc.details() or ""
        await queue.put(None)
    return {"sent": 3000, "coded and returned": samples, "status": code, "details": details[:80],
            "exit": server.popen.wait(30)}  # fmt: skip


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, Counter):
        return ", ".join(f"{k} {n}" for k, n in value.items())
    return str(value)


def _table(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.abuse", description=__doc__)
    parser.add_argument("--seconds", type=float, default=50.0, help="per scenario")
    parser.add_argument("--live", type=int, default=64, help="real-time streams beside the abusers")
    parser.add_argument("--log", type=Path, default=Path("/tmp/sancodec-abuse.log"))
    parser.add_argument("--workers", type=int, default=0, help="server processes (0: one per core)")
    parser.add_argument("--abuser", choices=list(ABUSERS), help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.abuser:  # the abusers' own process
        print(json.dumps(asyncio.run(abusers(args.abuser, args.address, args.port, args.seconds))))
        return
    server = _start(args.log, args.workers, "--idle-timeout-s", "3", "--config-timeout-s", "2")
    try:
        base = server.rss_mib()
        names = [n for n in ABUSERS if n != "crowd"]
        rows = asyncio.run(_abuse(server, args.seconds, args.live, names))
        print(f"server RSS: {base:.0f} MiB after start, {server.rss_mib():.0f} MiB after the "
              f"abuse, peak {server.peak_mib():.0f} MiB; {args.live} live real-time streams\n")  # fmt: skip
        print(_table(rows) + "\n")
        print(_table(sanc_bombs()) + "\n")
    finally:
        server.stop()  # SIGTERM: every worker drains
    # shedding by queue delay: many peers' worth of streams, so the per-peer cap is lifted here
    crowd_log = args.log.with_suffix(".crowd.log")
    server = _start(crowd_log, args.workers, "--max-streams-per-peer", "4096")
    try:
        crowd = asyncio.run(scenario(server, "crowd", args.seconds, args.live))
        print(_table([crowd]) + "\n")
    finally:
        server.stop()
    server = _start(args.log.with_suffix(".sigterm.log"), args.workers, "--grace-s", "4")
    try:
        print(_table([asyncio.run(sigterm_mid_stream(server))]) + "\n")
    finally:
        server.stop()
    for log in (args.log, args.log.with_suffix(".crowd.log"), args.log.with_suffix(".sigterm.log")):
        print(f"tracebacks in the server log ({log}): {log.read_text().count('Traceback')}")


if __name__ == "__main__":
    main()
