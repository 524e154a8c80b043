"""The serving benchmark's load: servers under test in their own processes (all their workers
counted), the echo service (the transport limit), and the real-time and full-speed streams that
drive them (bench/serving.py runs them)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 360.0
CHANNELS = 2
RT_CHUNK = 180  # frames: 0.5 s at 360 Hz
FULL_CHUNK = 4096
# streams multiplexed over one client channel (a connection of its own): several connections,
# so that a server's workers (SO_REUSEPORT spreads connections) all get streams
STREAMS_PER_CHANNEL = 4
OPTIONS = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]
# gRPC shares one connection among a process's channels to one address, unless told not to
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]

Signal = npt.NDArray[np.float32]


# ---------------------------------------------------------------- processes under test


def _machine_busy_s() -> float:
    """CPU seconds all processes of the machine used so far (and stolen by the hypervisor)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _, _, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(eq=False)
class Proc:
    """A server under test in its own process, with its workers: their CPU time and memory,
    added up, read from /proc."""

    popen: subprocess.Popen[bytes]
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The process and its children (a server's workers)."""
        pid = self.popen.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid, *(int(c) for c in children)]

    def _status(self, key: str) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(key + ":"):
                        total += int(line.split()[1]) / 1024
        return total

    def rss_mib(self) -> float:
        return self._status("VmRSS")

    def peak_mib(self) -> float:
        """The sum of every process's own peak."""
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        """Start a new VmHWM from the current RSS (Linux clear_refs 5); no-op where refused."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

    def cpu_s(self, main_thread: bool = False) -> float:
        """CPU seconds of the processes, or of their main (event-loop) threads alone."""
        total = 0.0
        for pid in self.pids():
            task = f"/task/{pid}" if main_thread else ""
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}{task}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return total

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
    port = free_port()
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
    payload = bytes(size // CHANNELS)
    channels = [codes_pb2.ChannelCode(channel=c, payload=payload) for c in range(CHANNELS)]
    block = codes_pb2.EncodedBlock(start_sample=0, sample_count=4096, channels=channels)
    return codec_pb2.EncodeResponse(block=block, quality=codec_pb2.BlockQuality(spike_count=1))


async def echo_server(port: int, response: Path | None, size: int) -> None:
    """`python bench/serving.py --echo-server PORT [--echo-response FILE]`: serve until killed."""
    if response is None:
        block = _stand_in_block(size)
    else:
        block = codec_pb2.EncodeResponse.FromString(response.read_bytes())
    server = grpc.aio.server(options=OPTIONS)
    codec_pb2_grpc.add_CodecServiceServicer_to_server(
        EchoService(block, block.block.sample_count or 4096), server
    )
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
    details: Counter[str] = field(default_factory=Counter)  # each RPC error's code and message
    fixed_kernels: bool = False  # the streams keep the model's kernels (no checks)
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


def _config(fixed_kernels: bool = False) -> codec_pb2.EncodeRequest:
    config = codec_pb2.EncodeConfig(model="ecg", sample_rate_hz=RATE_HZ, channel_count=CHANNELS,
                                    dtype=codes_pb2.SAMPLE_DTYPE_FLOAT32,
                                    fixed_kernels=fixed_kernels)  # fmt: skip
    return codec_pb2.EncodeRequest(config=config)


def _chunk(data: bytes) -> codec_pb2.EncodeRequest:
    return codec_pb2.EncodeRequest(chunk=codec_pb2.SignalChunk(samples=data))


async def _blocks(phase: Phase, answers: AsyncIterator[codec_pb2.EncodeResponse], expected: int
                  ) -> AsyncIterator[codes_pb2.EncodedBlock]:  # fmt: skip
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
        phase.details[f"{exc.code().name}: {exc.details()}"] += 1
    phase.blocks += blocks
    if blocks != expected:
        phase.errors["wrong block count"] += 1


async def _realtime_stream(stub: Any, source: Source, stream: int, t0: float, frames: int,
                           blocks: int, reach: int, phase: Phase) -> None:  # fmt: skip
    """A 0.5 s chunk as each 0.5 s has passed; the latency of each of its `blocks` blocks."""
    loop = asyncio.get_running_loop()
    sends = [t0 + (k + 1) * RT_CHUNK / RATE_HZ for k in range(math.ceil(frames / RT_CHUNK))]

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        yield _config(phase.fixed_kernels)
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
        yield _config(phase.fixed_kernels)
        for lo in range(0, phase.per_stream, FULL_CHUNK):
            yield _chunk(source.chunk(stream, lo, min(lo + FULL_CHUNK, phase.per_stream)))

    async for _ in _blocks(phase, stub.Encode(requests()), phase.expected // phase.streams):
        pass


Run = Callable[[Any, int, float], Coroutine[Any, Any, None]]  # (stub, stream, start time)


async def _drive(proc: Proc, phase: Phase, run: Run) -> Phase:
    """All streams at once over ceil(n / 64) channels; wall, CPU and memory around them."""
    options = [*OPTIONS, *OWN_CONNECTION]  # a connection per channel
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
    phase = Phase(n, max(frames), sum(blocks), fixed_kernels=args.fixed_kernels)
    reach = 2 * args.block_length + args.context - 1  # block b is final with window b+1

    def run(stub: Any, i: int, t0: float) -> Coroutine[Any, Any, None]:
        return _realtime_stream(stub, source, i, t0 + starts[i], frames[i], blocks[i], reach, phase)

    return await _drive(proc, phase, run)


async def full_speed(proc: Proc, source: Source, n: int, args: argparse.Namespace) -> Phase:
    """n streams at full speed, each at least --full-frames, all at least --full-total frames."""
    frames = max(args.full_frames, math.ceil(args.full_total / n / FULL_CHUNK) * FULL_CHUNK)
    phase = Phase(n, frames, n * math.ceil(frames / args.block_length),
                  fixed_kernels=args.fixed_kernels)  # fmt: skip
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
