"""What clients are told when the server refuses a stream: `python -m bench.refusals [--streams N]`.

A server with `--max-streams 1` on loopback; one stream holds its only slot, and N more are
refused at admission (RESOURCE_EXHAUSTED). Three kinds of client open them: grpcio's sync client
(as `CodecClient` is), and its asyncio client writing chunks at once after the config, or only
after the server's first answer (EncodeStarted, which a refused stream never gets). It prints
the codes and messages each kind got: grpcio's asyncio client can report a refusal as INTERNAL
("Internal error from Core") or UNAVAILABLE when it still writes as the server ends the stream
(grpc/grpc#36066).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

from bench.abuse_clients import CONFIG, chunk
from bench.serving_load import spawn
from sancodec.v1 import codec_pb2, codec_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
CHUNKS = 20  # each refused stream's chunks after its config
SAMPLES = np.zeros(256, dtype=np.float32)


def _told(code: grpc.StatusCode, details: str | None) -> str:
    return f"{code.name}: {(details or '')[:60]}"


def _sync(address: str) -> str:
    def requests() -> Iterator[codec_pb2.EncodeRequest]:
        yield codec_pb2.EncodeRequest(config=CONFIG)
        yield from (chunk(SAMPLES) for _ in range(CHUNKS))

    with grpc.insecure_channel(address) as channel:
        try:
            list(codec_pb2_grpc.CodecServiceStub(channel).Encode(requests()))
        except grpc.RpcError as exc:
            return _told(exc.code(), exc.details())
    return "OK"


async def _asyncio(stub: codec_pb2_grpc.CodecServiceStub, wait_for_started: bool) -> str:
    started = asyncio.Event()

    async def requests() -> AsyncIterator[codec_pb2.EncodeRequest]:
        yield codec_pb2.EncodeRequest(config=CONFIG)
        if wait_for_started:
            await started.wait()
        for _ in range(CHUNKS):
            yield chunk(SAMPLES)

    try:
        async for _ in stub.Encode(requests()):
            started.set()
    except grpc.aio.AioRpcError as exc:
        return _told(exc.code(), exc.details())
    return "OK"


async def run(streams: int) -> dict[str, Counter[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = await spawn(
            lambda port: ["-m", "server", "--models", str(REPO / "models"), "--host", "127.0.0.1",
                          "--port", str(port), "--metrics-port", "-1", "--max-streams", "1"],
            Path(tmp) / "server.log",
        )  # fmt: skip
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = codec_pb2_grpc.CodecServiceStub(channel)
                release = asyncio.Event()

                async def holder() -> AsyncIterator[codec_pb2.EncodeRequest]:
                    yield codec_pb2.EncodeRequest(config=CONFIG)
                    await release.wait()

                held = stub.Encode(holder())
                await anext(aiter(held))  # EncodeStarted: the one slot is taken
                told: dict[str, Counter[str]] = {}
                for name, wait in (("asyncio, chunks at once", False),
                                   ("asyncio, chunks after EncodeStarted", True)):  # fmt: skip
                    got = await asyncio.gather(*(_asyncio(stub, wait) for _ in range(streams)))
                    told[name] = Counter(got)
                loop = asyncio.get_running_loop()
                with ThreadPoolExecutor(16) as pool:
                    got = await asyncio.gather(
                        *(loop.run_in_executor(pool, _sync, server.address) for _ in range(streams))
                    )
                told["sync (CodecClient's kind)"] = Counter(got)
                release.set()
                held.cancel()
        finally:
            server.stop()
    return told


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.refusals", description=__doc__)
    parser.add_argument("--streams", type=int, default=300, help="refused streams per client kind")
    args = parser.parse_args(argv)
    for name, counts in asyncio.run(run(args.streams)).items():
        print(f"{name}: {args.streams} refused streams")
        for told, count in counts.most_common():
            print(f"  {count:4d}  {told}")


if __name__ == "__main__":
    main()
