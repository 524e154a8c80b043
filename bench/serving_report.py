"""The serving benchmark's report: the real-time, full-speed and compute tables, the verdict on
issue #19's targets, and the section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from bench.serving_load import (
    CHANNELS,
    FULL_CHUNK,
    RATE_HZ,
    REPO,
    RT_CHUNK,
    STREAMS_PER_CHANNEL,
    Phase,
)  # fmt: skip

COMPUTE_STEPS = {
    "windows": "StreamCoder.push: windows, z-scored",
    "detect": "LoadedModel.detect (ONNX Runtime) alone",
    "coding": "StreamCoder.accept: layer choice, SAN layer, residual, range-coded payloads",
    "answers": "block answers: EncodedBlock proto, quality, beats, telemetry",
}


@dataclass(frozen=True)
class Compute:
    samples: int
    seconds: dict[str, float]  # median per step of COMPUTE_STEPS

    def rate(self, *steps: str) -> float:
        return self.samples / sum(self.seconds[s] for s in steps or tuple(self.seconds))


@dataclass(frozen=True)
class Row:
    streams: int
    server: str  # which server settings (and which repeat)
    phase: Phase  # real time, or full speed
    echo: Phase | None = None  # the echo at full speed, for full-speed rows


def _errors(phase: Phase) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(phase.errors.items())) or "0"


def _cpu(p: Phase) -> str:
    server, loop = p.cores(p.server_cpu_s), p.cores(p.loop_cpu_s)
    return (
        f"{server:.2f} ({loop:.2f}) / {p.cores(p.client_cpu_s):.2f} / {p.cores(p.other_cpu_s):.2f}"
    )


def _realtime_table(rows: list[Row]) -> list[str]:
    out = ["| streams | server | offered ksamples/s | blocks got / expected | errors | p50 ms | p99 ms "
           "| max ms | at close p50 / p99 ms | client send lag p99 ms | CPU cores: server (event loop) "
           "/ client / other | server RSS / peak MiB |", "|---" * 12 + "|"]  # fmt: skip
    for r in rows:
        p = r.phase
        out.append(
            f"| {r.streams} | {r.server} | {r.streams * CHANNELS * RATE_HZ / 1e3:.1f} "
            f"| {p.blocks} / {p.expected} | {_errors(p)} | {p.ms(50, p.live):.1f} "
            f"| {p.ms(99, p.live):.1f} | {p.ms(100, p.live):.1f} | {p.ms(50, p.closing):.0f} / "
            f"{p.ms(99, p.closing):.0f} | {p.ms(99, p.lags):.1f} | {_cpu(p)} "
            f"| {p.rss_mib:.0f} / {p.peak_mib:.0f} |"
        )
    return out


def _full_table(rows: list[Row], compute: Compute) -> list[str]:
    out = ["| streams | server | frames / stream | server Msamples/s | echo Msamples/s | server / echo "
           "| server / compute | errors (server; echo) | CPU cores: server (event loop) / client / other "
           "| server RSS / peak MiB |", "|---" * 10 + "|"]  # fmt: skip
    for r in rows:
        assert r.echo is not None
        p, rate, echo = r.phase, r.phase.samples_per_s, r.echo.samples_per_s
        out.append(
            f"| {r.streams} | {r.server} | {p.per_stream} | {rate / 1e6:.3f} | {echo / 1e6:.1f} "
            f"| {rate / echo:.3f} | {rate / compute.rate():.2f} | {_errors(p)}; {_errors(r.echo)} "
            f"| {_cpu(p)} | {p.rss_mib:.0f} / {p.peak_mib:.0f} |"
        )
    return out


def _compute_table(compute: Compute) -> list[str]:
    total = sum(compute.seconds.values())
    out = ["| in-process step (no gRPC) | Msamples/s | share of the time |", "|---|---|---|"]
    for step, what in COMPUTE_STEPS.items():
        share = compute.seconds[step] / total
        out.append(f"| {what} | {compute.rate(step) / 1e6:.2f} | {share:.0%} |")
    return [*out, f"| **all: the compute limit** | **{compute.rate() / 1e6:.2f}** | 100% |"]


def _verdict(realtime: list[Row], full: list[Row], compute: Compute) -> list[str]:
    """Issue #19's targets: full speed >= 10 M samples/s at 16 streams or more and >= 0.8 of the
    compute limit; real time p99 < 50 ms without errors at the largest level; the close storm's
    p99 < 0.5 s at 1024 streams."""
    top, out = max(r.streams for r in realtime), []
    for server in dict.fromkeys(r.server.split(" #")[0] for r in realtime):
        runs = [r.phase for r in realtime if r.streams == top and r.server.split(" #")[0] == server]
        p99 = [p.ms(99, p.live) for p in runs]
        met = sum(q < 50 and not p.errors for q, p in zip(p99, runs, strict=True))
        errors = sum(sum(p.errors.values()) for p in runs)
        storm = [x for r in realtime if r.streams == 1024 and r.server.split(" #")[0] == server
                 for x in r.phase.closing]  # fmt: skip
        storm_text = (
            f" The close storm at 1024 streams: p99 {Phase.ms(99, storm) / 1000:.2f} s: target "
            f"(< 0.5 s) {'met' if Phase.ms(99, storm) < 500 else '**not met**'}."
            if storm
            else ""
        )
        out.append(
            f"- {top} real-time streams, server {server}: p99 while streaming "
            f"{', '.join(f'{q:.1f}' for q in p99)} ms in {len(runs)} runs, {errors} errors: target "
            f"(p99 < 50 ms, no errors) {'met' if met == len(runs) else '**not met**'} (met in {met} "
            f"of {len(runs)} runs).{storm_text}"
        )
    for server in dict.fromkeys(r.server for r in full):
        rows = [r for r in full if r.server == server and r.streams >= 16]
        best = max(rows, key=lambda r: r.phase.samples_per_s)
        rate = best.phase.samples_per_s
        met = rate >= 10e6 and rate >= 0.8 * compute.rate()
        out.append(
            f"- Full speed, server {server}: at most {rate / 1e6:.2f} M samples/s at 16 streams or "
            f"more ({best.streams}), {rate / compute.rate():.2f} of the compute limit: target "
            f"(>= 10 M samples/s and >= 0.8 of the limit) {'met' if met else '**not met**'}."
        )
    return out


def report(realtime: list[Row], full: list[Row], compute: Compute, meta: dict[str, str],
           args: argparse.Namespace) -> str:  # fmt: skip
    """The markdown section: setup, the three tables and the verdict on the targets."""
    n, ctx = args.block_length, args.context
    stagger = n / RATE_HZ if args.stagger is None else args.stagger
    lines = [
        f"{meta['date']}, {meta['machine']}. ONNX Runtime provider of the server: {meta['provider']}. "
        f"Load average before the run: {meta['load']}. Client, server and echo share the "
        f"{meta['cores']} cores. Command: `{meta['command']}`.",
        "",
        f"**Real time.** Each stream (MIT-BIH 100, both leads, float32 mV, its own offset) sends a "
        f"{RT_CHUNK}-frame chunk (0.5 s) every 0.5 s. Stream starts are spread evenly over "
        f"{stagger:.2f} s{' (one block)' if args.stagger is None else ''}, as independent devices would be, and every stream goes on "
        f"until {args.duration:g} s after the last one started: all are concurrent for that long. "
        f"Block latency = arrival of the block minus the scheduled send time of the chunk holding "
        f"the last sample the server needs to make it final: block b (first sample s) is final "
        f"once window b+1 is detected, i.e. with sample s + 2x{n} + {ctx} - 1. p50/p99/max: blocks "
        f"made final while streaming. 'At close': blocks made final by a stream's last chunk or "
        f"its half-close; all streams end within the same 0.5 s, so this is a close storm (every "
        f"stream flushes about two blocks at once), not a steady-state figure. Servers: one process "
        f"(`--workers 1`) and {meta['workers']} workers on one port; the client opens a connection per "
        f"{STREAMS_PER_CHANNEL} streams, which the kernel spreads over the workers. CPU cores: the "
        f"server's processes (in parentheses: their main threads alone, which run the event loops), "
        f"the benchmark client's, and everything else on the machine (other jobs: noise). RSS: all "
        f"of a server's processes.",
        "",
        *_realtime_table(realtime),
        "",
        f"**Full speed.** Each stream sends its excerpt in {FULL_CHUNK}-frame chunks as fast as "
        f"flow control allows (at least {args.full_total} frames per level in all); samples/s = "
        f"coded frames x {CHANNELS} channels / wall time. **Echo** (the transport limit): the same "
        f"client against a trivial grpc.aio Encode in its own process, answering one recorded "
        f"typical block answer ({meta['block_bytes']} bytes) per {n} frames, as the codec does, "
        f"without coding; median of repeats over >= {args.echo_seconds:g} s. **Compute** (the "
        f"limit without gRPC): {args.compute_blocks} blocks x {CHANNELS} channels of the same "
        f"signal through the server's own EncodeSession coders (with the model's kernels: no "
        f"check of a stream's kernels, which is not coding), LoadedModel.detect in batches of "
        f"{args.max_batch}, and the block answers, in the benchmark process, median of "
        f"{args.repeats}.",
        "",
        *_full_table(full, compute),
        "",
        *_compute_table(compute),
        "",
        f"Server RSS: {meta['rss_start']} MiB once SERVING, {meta['rss_idle']} MiB after the "
        f"warm-up, {meta['rss_end']} MiB after the last level.",
        "",
        *_verdict(realtime, full, compute),
    ]
    return "\n".join(lines) + "\n"


def write_docs(text: str) -> None:
    """Add to docs/benchmarks.md: the section the first time, a dated run at the section's end
    (before the next section) after that."""
    docs = REPO / "docs" / "benchmarks.md"
    heading = "## Serving (gRPC, CPU)"
    body = docs.read_text()
    if heading not in body:
        docs.write_text(body.rstrip("\n") + f"\n\n{heading}\n\n{text}")
        return
    title = f"### Run of {time.strftime('%Y-%m-%d %H:%M')}"
    start = body.index(heading) + len(heading)
    end = body.find("\n## ", start)
    end = len(body) if end < 0 else end + 1
    run = f"\n{title}\n\n{text}"
    docs.write_text(
        body[:end].rstrip("\n") + "\n" + run + ("\n" + body[end:] if end < len(body) else "")
    )
