"""Streams fit their own kernels in the server (ecg adapts after 4 blocks): the update travels in
the first block that uses it, and the offline decoder, a .sanc file and the server's Decode all
decode it alike; a damaged update is DATA_LOSS naming its block."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import wfdb
from server_harness import RunningServer, encode_requests, start

from client.offline import inspect_file
from sancodec.bundle import load_bundle
from sancodec.codebook import Codebook
from sancodec.decoder import decode
from sancodec.encodergraph import kernel_swapper
from sancodec.header import ChannelInfo, ModelRef, StreamHeader
from sancodec.kernelupdates import Adapter
from sancodec.payload import decode_block
from sancodec.plan import CodingPlan
from sancodec.sancfile import SancWriter, decode_file
from sancodec.streamcoder import StreamCoder, code_stream
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2
from server.codec_threads import CodecThreads
from server.sessions import check_outcome

REPO = Path(__file__).resolve().parents[2]
FIRST_UPDATE = 4  # ecg's adapt_after_samples / block_length


@pytest.fixture(scope="module")
def ecg(shared_data: Path) -> np.ndarray:
    """MIT-BIH 100, both leads, the first 6 blocks in mV: (2, 24576)."""
    path = shared_data / "wfdb" / "mitdb" / "100"
    return wfdb.rdrecord(str(path), sampto=6 * 4096).p_signal.T.copy()


def _encode(server: RunningServer, signal: np.ndarray, chunk: int, **config: object
            ) -> tuple[codec_pb2.EncodeStarted, list[codes_pb2.EncodedBlock]]:  # fmt: skip
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        responses = list(stub.Encode(encode_requests(signal, chunk, **config), timeout=60))
    return responses[0].started, [r.block for r in responses if r.HasField("block")]


@pytest.fixture(scope="module")
def served(server: RunningServer, ecg: np.ndarray
           ) -> tuple[codec_pb2.EncodeStarted, list[codes_pb2.EncodedBlock]]:  # fmt: skip
    return _encode(server, ecg, 997)


def header_of(started: codec_pb2.EncodeStarted) -> StreamHeader:
    model = ModelRef(started.model.name, started.model.version, started.model.manifest_sha256)
    channels = tuple(ChannelInfo.from_proto(c) for c in started.channels)
    codebook = Codebook.from_proto(started.codebook)
    return StreamHeader(model, codebook, 360.0, started.block_length, channels)


def _blocks(started: codec_pb2.EncodeStarted, messages: list[codes_pb2.EncodedBlock]) -> list:
    codebook, out = Codebook.from_proto(started.codebook), []
    for message in messages:
        out.append(decode_block(message, codebook))
        codebook = codebook.updated(out[-1].kernels)
    return out


def test_the_stream_gets_its_own_kernels_from_block_4_on(
    server: RunningServer, served: tuple, ecg: np.ndarray
) -> None:
    started, messages = served
    updates = [i for i, m in enumerate(messages) if m.kernels]
    assert updates == [FIRST_UPDATE]
    checks = server.telemetry.registry.get_sample_value(
        "sancodec_kernel_checks_total", {"model": "ecg", "version": "1", "outcome": "updated"}
    )
    assert checks == 1  # the one update answers this stream's first check
    shipped = Codebook.from_proto(started.codebook)
    blocks = _blocks(started, messages)
    fitted = blocks[FIRST_UPDATE].kernels
    assert [w.size for w in fitted] == [w.size for w in shipped.kernels]
    assert not np.array_equal(fitted[0], shipped.kernels[0])
    # the fitted kernels pay in the blocks after the update; the shipped ones in none before it
    assert not any(b.spike_count for b in blocks[:FIRST_UPDATE])
    assert all(b.spike_count for b in blocks[FIRST_UPDATE:])
    # the same bytes as the core's StreamCoder, fitting as the server does
    bundle = load_bundle(REPO / "models" / "ecg" / "1")
    plan = CodingPlan.from_manifest(bundle.manifest, channels=2)
    adapter = Adapter(plan, kernel_swapper(bundle, threads=1))
    coder = StreamCoder([plan, plan], bundle.manifest.adapt_after_samples)
    mine = code_stream(coder, ecg, adapter.spikes, adapter.refit)
    assert [b.message() for b in mine] == list(messages)


def test_codes_do_not_depend_on_chunking_updates_included(
    server: RunningServer, served: tuple, ecg: np.ndarray
) -> None:
    assert _encode(server, ecg, 5000)[1] == served[1]


def test_offline_file_and_server_decode_alike(
    server: RunningServer, served: tuple, tmp_path: Path
) -> None:
    started, messages = served
    blocks = _blocks(started, messages)
    header = header_of(started)
    offline = header.to_physical(decode(blocks, header.codebook, 2))
    path = tmp_path / "adapted.sanc"
    with SancWriter(path, header) as writer:
        for block in blocks:
            writer.write(block)
    assert np.array_equal(decode_file(path)[1], offline)
    assert inspect_file(path).kernel_updates == 1
    config = codec_pb2.DecodeConfig(codebook=started.codebook, channel_count=2,
                                    channels=started.channels)  # fmt: skip
    requests = [codec_pb2.DecodeRequest(config=config)]
    requests += [codec_pb2.DecodeRequest(block=m) for m in messages]
    with grpc.insecure_channel(server.address) as channel:
        chunks = [r.chunk for r in codec_pb2_grpc.CodecServiceStub(channel).Decode(iter(requests))]
    frames = np.concatenate([np.frombuffer(c.samples, "<f4").reshape(-1, 2) for c in chunks])
    np.testing.assert_allclose(frames.T, offline, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda k: setattr(k, "levels", k.levels + b"\x00"), "ends with a zero byte"),
        (lambda k: setattr(k, "size", k.size + 64), "no longer than"),
    ],
)  # fmt: skip
def test_a_damaged_update_is_data_loss_naming_its_block(
    server: RunningServer, served: tuple, damage: object, words: str
) -> None:
    _started, messages = served
    broken = [codes_pb2.EncodedBlock() for _ in messages]
    for mine, message in zip(broken, messages, strict=True):
        mine.CopyFrom(message)
    damage(broken[FIRST_UPDATE].kernels[0])  # type: ignore[operator]
    requests = [
        codec_pb2.DecodeRequest(config=codec_pb2.DecodeConfig(model="ecg", channel_count=2))
    ]
    requests += [codec_pb2.DecodeRequest(block=m) for m in broken]
    with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError) as caught:
        list(codec_pb2_grpc.CodecServiceStub(channel).Decode(iter(requests), timeout=30))
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert f"block {FIRST_UPDATE}" in (caught.value.details() or "")
    assert words in (caught.value.details() or "")


def test_fixed_kernels_and_model_info(server: RunningServer, ecg: np.ndarray) -> None:
    _, messages = _encode(server, ecg, 4096, fixed_kernels=True)
    assert not any(m.kernels for m in messages)
    budget = codec_pb2.QualityTarget(max_bits_per_sample=0.5)  # kept: no update breaks it
    _, messages = _encode(server, ecg, 4096, quality=budget)
    assert not any(m.kernels for m in messages)
    assert all(8 * m.ByteSize() <= 0.5 * m.sample_count * 2 for m in messages)
    with grpc.insecure_channel(server.address) as channel:
        models = codec_pb2_grpc.CodecServiceStub(channel).ListModels(codec_pb2.ListModelsRequest())
    adapts = {m.ref.name: m.adapt_after_samples for m in models.models}
    assert adapts["ecg"] == 16384
    assert adapts["eeg"] == adapts["ecg-rhythm"] == 0


def _broken_refit(self: Adapter, request: object) -> None:
    raise RuntimeError("ONNX Runtime fell over")


def _dropped(self: CodecThreads, *args: object, **kwargs: object) -> asyncio.Future[None]:
    """What the threads give for optional work they had no room for in time: a cancelled
    future (tests/server/test_codec_threads.py)."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.cancel()
    return future


@pytest.mark.parametrize(
    ("owner", "name", "stand_in", "outcome"),
    [(Adapter, "refit", _broken_refit, "failed"), (CodecThreads, "run_spare", _dropped, "skipped")],
)
def test_a_check_that_fails_or_is_dropped_keeps_the_kernels_and_the_stream(
    running: list[RunningServer], ecg: np.ndarray, monkeypatch: pytest.MonkeyPatch,
    owner: type, name: str, stand_in: object, outcome: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(owner, name, stand_in)
    server = start()
    running.append(server)
    _, messages = _encode(server, ecg, 997)
    assert sum(m.sample_count for m in messages) == ecg.shape[1]
    assert not any(m.kernels for m in messages)
    counted = server.telemetry.registry.get_sample_value(
        "sancodec_kernel_checks_total", {"model": "ecg", "version": "1", "outcome": outcome}
    )
    assert counted == 1


def test_blocks_held_for_a_check_leave_when_it_is_done_not_with_the_next_chunk(
    server: RunningServer, ecg: np.ndarray
) -> None:
    """Past the first check, then a pause: the block the check held comes during the pause."""
    pause_s = 4.0
    done_sending: list[float] = []

    def requests() -> Iterator[codec_pb2.EncodeRequest]:
        # 4 blocks, then 2 more in one chunk: the check at block 4 falls due in the last chunk
        yield from encode_requests(ecg, FIRST_UPDATE * 4096)
        done_sending.append(time.monotonic())
        time.sleep(pause_s)

    arrivals: dict[int, float] = {}
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        for response in stub.Encode(requests(), timeout=60):
            if response.HasField("block"):
                arrivals[response.block.start_sample // 4096] = time.monotonic()
    assert sorted(arrivals) == list(range(6))
    assert arrivals[FIRST_UPDATE - 1] - done_sending[0] < pause_s / 2


def test_a_check_outcome_tells_a_dropped_check_from_a_cancelled_stream() -> None:
    """A check the threads cancelled is skipped; the stream's own cancellation, while it waits
    for a check, goes on up (and is not counted as a skipped check); a failed one is failed."""

    async def main() -> tuple[tuple[object, str], tuple[object, str], bool, tuple[object, str]]:
        loop = asyncio.get_running_loop()
        dropped = loop.create_future()
        dropped.cancel()
        done = loop.create_future()
        done.set_result(None)
        pending = loop.create_future()
        stream = asyncio.ensure_future(check_outcome(pending, "ecg/1"))
        await asyncio.sleep(0)
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream
        failed = loop.create_future()
        failed.set_exception(RuntimeError("ONNX Runtime fell over"))
        return (
            await check_outcome(dropped, "ecg/1"),
            await check_outcome(done, "ecg/1"),
            stream.cancelled(),
            await check_outcome(failed, "ecg/1"),
        )

    assert asyncio.run(main()) == ((None, "skipped"), (None, "kept"), True, (None, "failed"))
