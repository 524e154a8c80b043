"""gRPC serving benchmark: `PYTHONPATH=. python bench/serving.py [--streams 1,16,256,1024] [--duration 20] [--write-docs]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import numpy.typing as npt
import onnxruntime
import wfdb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2
from server.config import ServerConfig
from server.repository import LoadedModel, ModelRepository
from server.sessions import EncodeSession
from server.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 360.0
CHANNELS = 2
RT_CHUNK = 180  # frames: 0.5 s at 360 Hz
FULL_CHUNK = 4096
STREAMS_PER_CHANNEL = 64  # streams multiplexed over one client channel (one connection each)
OPTIONS = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]

Signal = npt.NDArray[np.float32]


# ---------------------------------------------------------------- processes under test


def _machine_busy_s() -> float:
    """CPU seconds all processes of the machine used so far (and stolen by the hypervisor)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _, _, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(eq=False)
class Proc:
    """A server under test in its own process: its CPU time and memory, read from /proc."""

    popen: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _status(self, key: str) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return math.nan

    def rss_mib(self) -> float:
        return self._status("VmRSS")

    def peak_mib(self) -> float:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        """Start a new VmHWM from the current RSS (Linux clear_refs 5); no-op where refused."""
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.popen.pid}/clear_refs").write_text("5")

    def cpu_s(self, main_thread: bool = False) -> float:
        """CPU seconds of the process, or of its main (event-loop) thread alone."""
        task = f"/task/{self.popen.pid}" if main_thread else ""
        stat = Path(f"/proc/{self.popen.pid}{task}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


async def spawn(argv: Callable[[int], list[str]], log: Path) -> Proc:
    """Start `python ARGV(port)` on a free port; wait until its health service says SERVING."""
    port = _free_port()
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with log.open("wb") as out:
        popen = subprocess.Popen([sys.executable, *argv(port)], cwd=REPO, stdout=out,
                                 stderr=subprocess.STDOUT, env=os.environ | {"PYTHONPATH": path})  # fmt: skip
    proc, deadline = Proc(popen, port), time.monotonic() + 180
    async with grpc.aio.insecure_channel(proc.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and popen.poll() is None:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return proc
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.25)
    proc.stop()
    raise RuntimeError(f"{argv(port)} did not become SERVING:\n{log.read_text()[-3000:]}")


# ---------------------------------------------------------------- the echo service


class EchoService(codec_pb2_grpc.CodecServiceServicer):
    """Encode with the codec's messages and number of answers, and no coding at all."""

    def __init__(self, block: codec_pb2.EncodeResponse, block_length: int) -> None:
        self.block, self.block_length = block, block_length

    async def Encode(  # noqa: N802 - the proto's name
        self, requests: AsyncIterator[codec_pb2.EncodeRequest], context: Any
    ) -> AsyncIterator[codec_pb2.EncodeResponse]:
        first = await anext(requests)
        frame_bytes = 4 * max(first.config.channel_count, 1)
        yield codec_pb2.EncodeResponse(started=codec_pb2.EncodeStarted(block_length=self.block_length))  # fmt: skip
        pending = blocks = 0
        async for request in requests:
            pending += len(request.chunk.samples) // frame_bytes
            while pending >= self.block_length:  # one block per block_length frames, as the codec
                pending -= self.block_length
                blocks += 1
                yield self.block
        if pending:
            blocks += 1
            yield self.block
        yield codec_pb2.EncodeResponse(summary=codec_pb2.EncodeSummary(block_count=blocks))


def _stand_in_block(size: int) -> codec_pb2.EncodeResponse:
    """A block answer of about `size` bytes, for an echo started without a recorded one."""
    residual = codes_pb2.ResidualLayer(step_exp=-6, count=1, bits=bytes(size // CHANNELS))
    channels = [codes_pb2.ChannelCode(channel=c, residual=residual) for c in range(CHANNELS)]
    block = codes_pb2.EncodedBlock(start_sample=0, sample_count=2048, channels=channels)
    return codec_pb2.EncodeResponse(block=block, quality=codec_pb2.BlockQuality(spike_count=1))


async def echo_server(port: int, response: Path | None, size: int) -> None:
    """`python bench/serving.py --echo-server PORT [--echo-response FILE]`: serve until killed."""
    if response is None:
        block = _stand_in_block(size)
    else:
        block = codec_pb2.EncodeResponse.FromString(response.read_bytes())
    server = grpc.aio.server(options=OPTIONS)
    codec_pb2_grpc.add_CodecServiceServicer_to_server(EchoService(block, 2048), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


# ---------------------------------------------------------------- load generation


@dataclass
class Phase:
    """What one load phase measured, over all its streams."""

    streams: int
    per_stream: int  # frames each stream sends (at most)
    expected: int  # blocks, all streams together
    live: list[float] = field(default_factory=list)  # latency of blocks made final while streaming
    closing: list[float] = field(default_factory=list)  # ... made final by the last chunk or close
    lags: list[float] = field(default_factory=list)  # how late the client sent real-time chunks
    blocks: int = 0
    frames: int = 0  # frames of the blocks received
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = math.nan
    server_cpu_s: float = math.nan
    loop_cpu_s: float = math.nan  # the server's main thread: event loop, sessions and coding
    client_cpu_s: float = math.nan
    other_cpu_s: float = math.nan  # everything else on the machine: the noise of a shared host
    rss_mib: float = math.nan
    peak_mib: float = math.nan

    @property
    def samples_per_s(self) -> float:
        return self.frames * CHANNELS / self.wall_s

    def cores(self, seconds: float) -> float:
        return seconds / self.wall_s

    @staticmethod
    def ms(q: float, values: list[float]) -> float:
        return 1000 * float(np.percentile(values, q)) if values else math.nan


@dataclass(frozen=True)
class Source:
    """MIT-BIH 100, both leads in mV as (frames, 2) float32; stream i starts at its own offset."""

    frames: Signal

    def chunk(self, stream: int, lo: int, hi: int) -> bytes:
        offset = (stream * 7919 * 37) % (self.frames.shape[0] // 2)
        return self.frames[offset + lo : offset + hi].tobytes()  # interleaved by frame

    def fit(self, frames: int) -> Source:
        """Tiled so that every stream can read `frames` from its offset."""
        need = self.frames.shape[0] // 2 + frames
        return self if need <= self.frames.shape[0] else Source(np.resize(self.frames, (need, 2)))


def _config() -> codec_pb2.EncodeRequest:
    config = codec_pb2.EncodeConfig(model="ecg", sample_rate_hz=RATE_HZ, channel_count=CHANNELS,
                                    dtype=codes_pb2.SAMPLE_DTYPE_FLOAT32)  # fmt: skip
    return codec_pb2.EncodeRequest(config=config)


def _chunk(data: bytes) -> codec_pb2.EncodeRequest:
    return codec_pb2.EncodeRequest(chunk=codec_pb2.SignalChunk(samples=data))


async def _blocks(phase: Phase, answers: AsyncIterator[codec_pb2.EncodeResponse], expected: int
                  ) -> AsyncIterator[codec_pb2.EncodedBlock]:  # fmt: skip
    """One stream's blocks; counts in-band statuses, RPC errors and a wrong number of blocks."""
    blocks = 0
    try:
        async for response in answers:
            kind = response.WhichOneof("payload")
            if kind == "status":
                phase.errors[f"in-band status {response.status.code}"] += 1
            elif kind == "block":
                blocks += 1
                phase.frames += response.block.sample_count
                yield response.block
    except grpc.aio.AioRpcError as exc:
        phase.errors[exc.code().name] += 1
    phase.blocks += blocks
    if blocks != expected:
        phase.errors["wrong block count"] += 1


async def _realtime_stream(stub: Any, source: Source, stream: int, t0: float, frames: int,
                           blocks: int, reach: int, phase: Phase) -> None:  # fmt: skip
    """A 0.5 s chunk as each 0.5 s has passed; the latency of each of its `blocks` blocks."""
    loop = asyncio.get_running_loop()
    sends = [t0 + (k + 1) * RT_CHUNK / RATE_HZ for k in range(math.ceil(frames / RT_CHUNK))]

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        yield _config()
        for k, due in enumerate(sends):
            await asyncio.sleep(due - loop.time())
            phase.lags.append(loop.time() - due)
            yield _chunk(source.chunk(stream, k * RT_CHUNK, min((k + 1) * RT_CHUNK, frames)))

    await asyncio.sleep(t0 - loop.time())
    async for block in _blocks(phase, stub.Encode(requests()), blocks):
        needed = block.start_sample + reach  # the last sample that block needs to be final
        latency = loop.time() - sends[min(needed, frames - 1) // RT_CHUNK]
        (phase.live if needed < frames - RT_CHUNK else phase.closing).append(latency)


async def _full_stream(stub: Any, source: Source, stream: int, phase: Phase) -> None:
    """The whole excerpt in FULL_CHUNK-frame chunks, as fast as flow control lets them go."""

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        yield _config()
        for lo in range(0, phase.per_stream, FULL_CHUNK):
            yield _chunk(source.chunk(stream, lo, min(lo + FULL_CHUNK, phase.per_stream)))

    async for _ in _blocks(phase, stub.Encode(requests()), phase.expected // phase.streams):
        pass


Run = Callable[[Any, int, float], Coroutine[Any, Any, None]]  # (stub, stream, start time)


async def _drive(proc: Proc, phase: Phase, run: Run) -> Phase:
    """All streams at once over ceil(n / 64) channels; wall, CPU and memory around them."""
    options = [*OPTIONS, ("grpc.use_local_subchannel_pool", 1)]  # a connection per channel
    channels = [grpc.aio.insecure_channel(proc.address, options=options)
                for _ in range(math.ceil(phase.streams / STREAMS_PER_CHANNEL))]  # fmt: skip
    stubs = [codec_pb2_grpc.CodecServiceStub(c) for c in channels]
    await asyncio.gather(*(c.channel_ready() for c in channels))
    proc.reset_peak()
    cpu, loop_cpu, client = proc.cpu_s(), proc.cpu_s(main_thread=True), time.process_time()
    busy = _machine_busy_s()
    start, t0 = time.perf_counter(), asyncio.get_running_loop().time()
    await asyncio.gather(*(run(stubs[i // STREAMS_PER_CHANNEL], i, t0) for i in range(phase.streams)))  # fmt: skip
    phase.wall_s = time.perf_counter() - start
    phase.server_cpu_s, phase.client_cpu_s = proc.cpu_s() - cpu, time.process_time() - client
    phase.loop_cpu_s = proc.cpu_s(main_thread=True) - loop_cpu
    phase.other_cpu_s = _machine_busy_s() - busy - phase.server_cpu_s - phase.client_cpu_s
    phase.rss_mib, phase.peak_mib = proc.rss_mib(), proc.peak_mib()
    await asyncio.gather(*(c.close() for c in channels))
    return phase


async def realtime(proc: Proc, source: Source, n: int, args: argparse.Namespace) -> Phase:
    """n real-time streams, their starts spread evenly over --stagger seconds; all stream until
    --duration seconds after the last one started."""
    stagger = args.block_length / RATE_HZ if args.stagger is None else args.stagger
    starts = [0.2 + stagger * i / n for i in range(n)]
    frames = [int((0.2 + stagger + args.duration - s) * RATE_HZ) // RT_CHUNK * RT_CHUNK for s in starts]  # fmt: skip
    blocks = [math.ceil(f / args.block_length) for f in frames]
    phase = Phase(n, max(frames), sum(blocks))
    reach = 2 * args.block_length + args.context - 1  # block b is final with window b+1

    def run(stub: Any, i: int, t0: float) -> Coroutine[Any, Any, None]:
        return _realtime_stream(stub, source, i, t0 + starts[i], frames[i], blocks[i], reach, phase)

    return await _drive(proc, phase, run)


async def full_speed(proc: Proc, source: Source, n: int, args: argparse.Namespace) -> Phase:
    """n streams at full speed, each at least --full-frames, all at least --full-total frames."""
    frames = max(args.full_frames, math.ceil(args.full_total / n / FULL_CHUNK) * FULL_CHUNK)
    phase = Phase(n, frames, n * math.ceil(frames / args.block_length))
    source = source.fit(frames)
    return await _drive(proc, phase, lambda stub, i, _: _full_stream(stub, source, i, phase))


async def echo_speed(proc: Proc, source: Source, n: int, args: argparse.Namespace) -> Phase:
    """The echo is quick: repeat its full-speed phase for at least --echo-seconds; the median."""
    phases = [await full_speed(proc, source, n, args)]
    while sum(p.wall_s for p in phases) < args.echo_seconds:
        phases.append(await full_speed(proc, source, n, args))
    return sorted(phases, key=lambda p: p.samples_per_s)[len(phases) // 2]


async def typical_block(proc: Proc, source: Source, path: Path) -> tuple[int, str]:
    """Encode one stream (a warm-up too) and save its median-size block answer to `path`;
    return its size and the execution provider the server reports for `ecg`."""

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        yield _config()
        for lo in range(0, 16 * 2048, FULL_CHUNK):
            yield _chunk(source.chunk(0, lo, lo + FULL_CHUNK))

    async with grpc.aio.insecure_channel(proc.address, options=OPTIONS) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        blocks = [r async for r in stub.Encode(requests()) if r.HasField("block")]
        models = await stub.ListModels(codec_pb2.ListModelsRequest())
    typical = sorted(blocks, key=lambda r: r.ByteSize())[len(blocks) // 2]
    path.write_bytes(typical.SerializeToString())
    provider = {m.ref.name: m.execution_provider for m in models.models}.get("ecg", "?")
    return typical.ByteSize(), provider


# ---------------------------------------------------------------- in-process compute limit


COMPUTE_STEPS = {
    "windows": "ChannelCoder.push: windows, z-scored",
    "detect": "LoadedModel.detect (ONNX Runtime) alone",
    "coding": "ChannelCoder.accept: SAN layer, painting, wavelet residual",
    "answers": "block answers: EncodedBlock proto (Golomb-Rice bits), quality, telemetry",
}


@dataclass(frozen=True)
class Compute:
    samples: int
    seconds: dict[str, float]  # median per step of COMPUTE_STEPS

    def rate(self, *steps: str) -> float:
        return self.samples / sum(self.seconds[s] for s in steps or tuple(self.seconds))


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
    windows = [[*c.push(row), *c.finish()] for c, row in zip(session.coders, x.T, strict=True)]
    flat = [(c, w) for c, ws in enumerate(windows) for w in ws]
    t.append(time.perf_counter())
    spikes = _detect_batched(model, [w for _, w in flat], max_batch)
    t.append(time.perf_counter())
    coded: list[list[Any]] = [[] for _ in session.coders]
    for (c, w), found in zip(flat, spikes, strict=True):
        coded[c] += session.coders[c].accept(w, found)
    t.append(time.perf_counter())
    session._assemble(coded, t[-1])  # what the server answers per block
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
        config = _config().config
        session = EncodeSession(config, repository, ServerConfig(), cast(Any, None), Telemetry())
        runs.append(_compute_once(model, session, x, args.max_batch))
    seconds = {step: statistics.median(r[step] for r in runs) for step in COMPUTE_STEPS}
    return Compute(x.size, seconds), model.manifest.block_length, model.manifest.context


# ---------------------------------------------------------------- report


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


def _verdict(realtime: list[Row], full: list[Row]) -> list[str]:
    top, out = max(r.streams for r in realtime), []
    for server in dict.fromkeys(r.server.split(" #")[0] for r in realtime if r.streams == top):
        runs = [r.phase for r in realtime if r.streams == top and r.server.split(" #")[0] == server]
        p99 = [p.ms(99, p.live) for p in runs]
        met = sum(q < 50 and not p.errors for q, p in zip(p99, runs, strict=True))
        storm = Phase.ms(99, [x for p in runs for x in p.closing]) / 1000
        errors = sum(sum(p.errors.values()) for p in runs)
        out.append(
            f"- {top} real-time streams, server {server}: p99 while streaming "
            f"{', '.join(f'{q:.1f}' for q in p99)} ms in {len(runs)} runs, {errors} errors: target "
            f"(p99 < 50 ms, no errors) {'met' if met == len(runs) else '**not met**'} (met in {met} "
            f"of {len(runs)} runs). The close storm (all streams ending together): p99 {storm:.1f} s."
        )
    ratios = [(r.streams, r.phase.samples_per_s / r.echo.samples_per_s)
              for r in full if r.server == "default" and r.echo is not None]  # fmt: skip
    listed = ", ".join(f"{q:.3f} at {n}" for n, q in ratios)
    met = "met" if max(q for _, q in ratios) >= 0.5 else "**not met**"
    return [*out, f"- Full speed, server / echo: {listed}: target (>= 0.5) {met}."]


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
        f"stream flushes about two blocks at once), not a steady-state figure. CPU cores: the "
        f"server's threads (in parentheses: its main thread alone, which runs the event loop, the "
        f"sessions and the block coding), the benchmark client's, and everything else on the "
        f"machine (other jobs: noise).",
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
        f"signal through the server's own EncodeSession coders, LoadedModel.detect in batches of "
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
        *_verdict(realtime, full),
    ]
    return "\n".join(lines) + "\n"


def write_docs(text: str) -> None:
    """Append to docs/benchmarks.md: the section the first time, a dated run after that."""
    docs = REPO / "docs" / "benchmarks.md"
    heading = "## Serving (gRPC, CPU)"
    body = docs.read_text()
    title = f"### Run of {time.strftime('%Y-%m-%d %H:%M')}" if heading in body else heading
    with docs.open("a") as out:
        out.write(("" if body.endswith("\n") else "\n") + f"\n{title}\n\n{text}")


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


def _server_argv(args: argparse.Namespace, threads: int) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        flags = f"--host 127.0.0.1 --port {port} --metrics-port {_free_port()} --grace-s 1"
        flags += f" --max-batch {args.max_batch} --threads {threads}"
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
    """Each level: real time, then the echo and the server at full speed. The largest level runs
    against every server, its real time --top-repeats times, the servers taking turns."""
    top, realtime_rows, full_rows = max(args.streams), [], []
    for n in args.streams:
        labels = list(servers) if n == top else ["default"]
        repeats = args.top_repeats if n == top else 1
        for k in range(repeats):
            for label in labels:
                name = f"{label} #{k + 1}" if repeats > 1 else label
                _say(f"{n} streams, server {name}: real time for {args.duration:g} s ...")
                phase = await realtime(servers[label], source, n, args)
                _say(f"  p99 {phase.ms(99, phase.live):.1f} ms, errors {_errors(phase)}")
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
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        async with contextlib.AsyncExitStack() as stack:
            server = await _start(stack, _server_argv(args, args.threads), logs / "server.log")
            servers, rss = {"default": server}, {"rss_start": server.rss_mib()}
            size, provider = await typical_block(server, source, logs / "block.bin")
            if args.variant_threads >= 0:
                argv = _server_argv(args, args.variant_threads)
                servers[f"--threads {args.variant_threads}"] = await _start(stack, argv, logs / "v.log")  # fmt: skip
            echo = await _start(stack, _echo_argv(logs / "block.bin"), logs / "echo.log")
            for proc in (echo, *servers.values()):
                await full_speed(proc, source, 16, args)  # warm-ups
            rss["rss_idle"] = servers["default"].rss_mib()
            realtime_rows, full_rows = await _measure(servers, echo, source, args)
            rss["rss_end"] = servers["default"].rss_mib()
    meta = _meta(provider, size, load) | {k: f"{v:.0f}" for k, v in rss.items()}
    return report(realtime_rows, full_rows, compute, meta, args)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    add = p.add_argument
    add("--streams", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 256, 1024])
    add("--duration", type=float, default=20.0, help="real-time seconds per stream")
    add("--stagger", type=float, default=None, help="spread of stream starts, s (default a block)")
    add("--full-frames", type=int, default=8192, help="full-speed frames per stream, at least")
    add("--full-total", type=int, default=1 << 22, help="full-speed frames per level, at least")
    add("--echo-seconds", type=float, default=2.0, help="repeat the echo phase this long")
    add("--compute-blocks", type=int, default=256, help="blocks per channel for the compute limit")
    add("--repeats", type=int, default=5, help="compute-limit repeats (median)")
    add("--max-batch", type=int, default=64, help="the server's --max-batch, and the compute's")
    add("--threads", type=int, default=0, help="the server's ORT intra-op threads (0: ORT picks)")
    add("--variant-threads", type=int, default=1,
        help="the largest level also against a server with this --threads; -1: skip")  # fmt: skip
    add("--top-repeats", type=int, default=3, help="real-time runs of the largest level")
    add("--models", type=Path, default=REPO / "models")
    add("--data", type=Path, default=REPO.parent / "shared" / "data")
    add("--write-docs", action="store_true", help="append the results to docs/benchmarks.md")
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
