"""The clients of bench/abuse.py: real-time streams, health probes, and the abusers themselves
(fast senders, idle and silent holders, slow-loris connections, decode bombs, .sanc bombs)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2

BLOCK, CONTEXT, RATE_HZ = 4096, 256, 360.0  # the shipped ecg model
CHUNK = 256  # samples a real-time stream sends at a time: 0.71 s
CONFIG = codec_pb2.EncodeConfig(
    model="ecg", sample_rate_hz=RATE_HZ, channel_count=1, dtype=codes_pb2.SAMPLE_DTYPE_FLOAT32
)


def signal_of(n: int, seed: int) -> np.ndarray:
    t = np.arange(n) / RATE_HZ
    return (np.sin(2 * np.pi * 1.2 * t) + 0.05 * np.random.default_rng(seed).normal(size=n)).astype(
        "<f4"
    )


def chunk(values: np.ndarray) -> codec_pb2.EncodeRequest:
    return codec_pb2.EncodeRequest(chunk=codec_pb2.SignalChunk(samples=values.tobytes()))


def _told(exc: grpc.aio.AioRpcError) -> str:
    code = exc.code().name
    unusual = code in ("INTERNAL", "UNAVAILABLE", "UNKNOWN") or os.environ.get("ABUSE_DETAILS")
    return f"{code} ({(exc.details() or '')[:60]})" if unusual else code


async def realtime(stub: codec_pb2_grpc.CodecServiceStub, until: float, latencies: list[float],
                   seed: int, burst: int = 0, start_s: float = 0.0) -> str:  # fmt: skip
    """A real-time stream that opens after `start_s`: CHUNK samples every CHUNK / RATE_HZ s. Block b is final once block
    b+1's window has its right context (sample (b+2) x BLOCK + CONTEXT): its latency runs from
    the send of the chunk that completed that to the block's arrival."""
    queue: asyncio.Queue[codec_pb2.EncodeRequest | None] = asyncio.Queue()
    sent: list[tuple[int, float]] = []  # (end sample, time) of each chunk

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        while (item := await queue.get()) is not None:
            yield item

    await asyncio.sleep(start_s)
    call = stub.Encode(requests())
    await queue.put(codec_pb2.EncodeRequest(config=CONFIG))
    signal_ = signal_of(int(RATE_HZ * 120), seed)

    async def send() -> None:
        if burst:  # a device that connects with a backlog, then keeps pace
            sent.append((burst, time.monotonic()))
            await queue.put(chunk(signal_[:burst]))
        for lo in range(burst, signal_.size, CHUNK):
            if time.monotonic() > until:
                break
            sent.append((lo + CHUNK, time.monotonic()))
            await queue.put(chunk(signal_[lo : lo + CHUNK]))
            await asyncio.sleep(CHUNK / RATE_HZ)
        await queue.put(None)

    sender = asyncio.ensure_future(send())
    blocks = 0
    try:
        async for response in call:
            if response.WhichOneof("payload") != "block":
                continue
            need = (blocks + 2) * BLOCK + CONTEXT
            completing = [t for end, t in sent if end >= need]
            if completing and not sender.done():
                latencies.append(time.monotonic() - completing[0])
            blocks += 1
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return _told(exc)
    finally:
        sender.cancel()


async def health_probe(channel: grpc.aio.Channel, until: float, latencies: list[float]) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            latencies.append(time.monotonic() - started)
        except grpc.aio.AioRpcError:
            latencies.append(5.0)
        await asyncio.sleep(0.05)


CODED = [0]  # samples the fast senders got coded, in this process


async def fast_sender(stub: codec_pb2_grpc.CodecServiceStub, until: float, chunk_bytes: int) -> str:
    data = signal_of(chunk_bytes // 4, 7)

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        yield codec_pb2.EncodeRequest(config=CONFIG)
        while time.monotonic() < until:
            yield chunk(data)

    try:
        async for response in stub.Encode(requests()):
            if response.WhichOneof("payload") == "block":
                CODED[0] += response.block.sample_count
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return _told(exc)


async def crowd_member(stub: codec_pb2_grpc.CodecServiceStub, until: float, seconds: float) -> str:
    """One of a crowd of real-time streams that arrive over the first half of the run, each with
    two blocks of backlog, so its load shows at once."""
    await asyncio.sleep(random.random() * seconds / 2)
    return await realtime(stub, until, [], random.randrange(1 << 16), burst=2 * BLOCK + CONTEXT)


async def idle_holder(
    stub: codec_pb2_grpc.CodecServiceStub, with_config: bool, hold_s: float
) -> str:
    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        if with_config:
            yield codec_pb2.EncodeRequest(config=CONFIG)
        await asyncio.sleep(hold_s)

    try:
        async for _ in stub.Encode(requests(), timeout=hold_s + 5):
            pass
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return _told(exc)


async def decode_bomb(stub: codec_pb2_grpc.CodecServiceStub, channels: int, samples: int) -> str:
    block = codes_pb2.EncodedBlock(start_sample=0, sample_count=samples)
    for c in range(channels):
        block.channels.add(channel=c)
    requests = [codec_pb2.DecodeRequest(config=codec_pb2.DecodeConfig(model="ecg", channel_count=channels)),
                codec_pb2.DecodeRequest(block=block)]  # fmt: skip
    try:
        async for _ in stub.Decode(iter(requests), timeout=30):
            pass
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return _told(exc)


async def slow_loris(port: int, count: int, hold_s: float) -> str:
    """TCP connections that send half an HTTP/2 preface and then nothing."""
    writers = []
    for _ in range(count):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PRI * HTTP/2.0\r\n")
            writers.append(writer)
        except OSError:
            break
    await asyncio.sleep(hold_s)
    for w in writers:
        w.close()
    return f"{len(writers)} held"


def sanc_bombs() -> list[dict[str, object]]:
    """Hand-made .sanc files with valid checksums, and a splice, decoded offline."""
    import resource
    import zlib

    from sancodec.errors import CorruptFileError
    from sancodec.sancfile import SIGNATURE, decode_file

    def framed(file_id: bytes, kind: bytes, payload: bytes) -> bytes:
        length = bytearray()
        n = len(payload)
        while True:
            length.append(n & 0x7F | (0x80 if n >> 7 else 0))
            n >>= 7
            if not n:
                break
        record = kind + bytes(length) + payload
        return record + zlib.crc32(record, zlib.crc32(file_id)).to_bytes(4, "little")

    from sancodec import (
        BlockCode,
        ChannelCode,
        ChannelInfo,
        Codebook,
        ModelRef,
        Quantizer,
        SanLayer,
        StreamHeader,
        block_bytes,
    )

    one = Codebook((np.ones(16, np.float32),))
    long = Codebook((np.ones(1 << 16, np.float32),))  # 65536 taps
    channel = (ChannelInfo("c", "mV"),)
    header = StreamHeader(ModelRef("x", "1"), one, 360.0, 2048, channel).to_proto()
    wide = StreamHeader(ModelRef("x", "1"), one, 360.0, 1 << 26, channel).to_proto()
    taps = StreamHeader(ModelRef("x", "1"), long, 360.0, 2048, channel).to_proto()
    claim = codes_pb2.EncodedBlock(start_sample=0, sample_count=1 << 26)
    spikes = SanLayer.from_spikes([0] * 1000, np.arange(1000) * 2, np.ones(1000), Quantizer(0))
    paint = block_bytes(BlockCode(0, 2048, (ChannelCode(0, spikes),)), long)
    small = block_bytes(BlockCode(0, 16, (ChannelCode(0, SanLayer(0, [], [], [])),)), one)
    fid = os.urandom(16)
    h = lambda m: framed(fid, b"H", m.SerializeToString())  # noqa: E731
    files = {
        "block claiming 2^26 samples": [h(header), framed(fid, b"B", claim.SerializeToString())],
        "header with 2^26-sample blocks": [h(wide)],
        "65536-tap kernel, 1000 spikes": [h(taps), framed(fid, b"B", paint)],
        "header of one file, block of another": [h(header), framed(os.urandom(16), b"B", small)],
    }
    rows = []
    for name, records in files.items():
        data = SIGNATURE + fid + b"".join(records)
        started = time.perf_counter()
        try:
            decode_file(data)
            outcome = "decoded"
        except CorruptFileError as exc:
            outcome = f"CorruptFileError: {str(exc)[:60]}"
        took = (time.perf_counter() - started) * 1000
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(
            {
                "file": f"{name} ({len(data)} B)",
                "outcome": outcome,
                "ms": took,
                "client peak RSS MiB": peak,
            }
        )
    return rows
