"""One Encode stream: its config, its coders, and what it answers (a Decode stream's is
server/decoding.py)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from sancodec import metrics
from sancodec.beats import kept_beats
from sancodec.errors import (
    CorruptCodeError,
    InvalidConfigError,
    InvalidSignalError,
    OverloadedError,
)
from sancodec.kernelupdates import Adapter, Kernels
from sancodec.samples import SampleDtype, unpack_samples
from sancodec.streamcoder import (
    CodedBlock,
    CodedChannel,
    CodingPlan,
    Spikes,
    StreamCoder,
    Window,
)
from sancodec.v1 import codec_pb2, codes_pb2
from server.batcher import Batcher
from server.channels import check_channel_count, input_channels
from server.codec_threads import CodecThreads
from server.config import ServerConfig
from server.repository import LoadedModel, ModelRepository
from server.telemetry import Telemetry

__all__ = ["EncodeSession", "check_outcome"]

T = TypeVar("T")
log = logging.getLogger(__name__)

# Model-domain values (physical / the model's scale) beyond this could overflow the 31-bit
# levels of a block's code; such a chunk is refused in-band, before it enters the stream.
MAX_MODEL_VALUE = 1e6
SLICE_WINDOWS = 4  # windows per channel coded at a time
SLICE_SAMPLES = 4 * 2048  # samples per channel of a chunk fed to the coders at a time
WORKER = f"{socket.gethostname()}/{os.getpid()}"  # this process, in EncodeStarted.worker
RATE_TOLERANCE = 0.005  # relative: 360 Hz models take 358.2 to 361.8 Hz


def _plan(model: LoadedModel, quality: codec_pb2.QualityTarget, channels: int) -> CodingPlan:
    target = quality.WhichOneof("target")
    value = getattr(quality, target) if target else None
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InvalidConfigError(f"{target} must be positive, got {value}")
    return CodingPlan.from_manifest(
        model.manifest, channels=channels, **({target: value} if target else {})
    )


def _beat_agreement(parts: tuple[CodedChannel, ...], sample_rate_hz: float) -> float | None:
    """The share of the block's beats (all channels) that its reconstruction keeps; None when
    the block has no beat."""
    found = [kept_beats(p.signal, p.reconstruction, sample_rate_hz) for p in parts]
    beats = sum(n for n, _ in found)
    return sum(kept for _, kept in found) / beats if beats else None


def _in_order(windows: list[Window], shared: list[Spikes], own: list[Spikes]) -> list[Spikes]:
    """The spikes of each window, from those of the model's kernels' windows (generation 0) and
    those of the stream's own, each in order."""
    found, theirs = iter(shared), iter(own)
    return [next(theirs) if w.generation else next(found) for w in windows]


async def check_outcome(
    check: asyncio.Future[Kernels | None], model: str
) -> tuple[Kernels | None, str]:
    """A check's kernels (None: keep them) and its outcome: updated, kept, skipped (the threads
    dropped it, having had no room for it in time) or failed (logged: a fit gone wrong costs the
    stream its new kernels, not its codes). A cancellation of the stream itself goes on up."""
    try:
        kernels = await check
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # the stream is cancelled, not just the check
            raise
        return None, "skipped"
    except Exception:
        log.exception("a check of the kernels of a stream of %s failed; it keeps them", model)
        return None, "failed"
    return kernels, "kept" if kernels is None else "updated"


class EncodeSession:
    def __init__(self, config: codec_pb2.EncodeConfig, repository: ModelRepository, settings: ServerConfig,
                 batcher: Batcher, telemetry: Telemetry, pool: CodecThreads) -> None:  # fmt: skip
        self.pool = pool
        self.model = repository.get(config.model, config.model_version)
        m = self.model.manifest
        if not abs(config.sample_rate_hz - m.sample_rate_hz) <= RATE_TOLERANCE * m.sample_rate_hz:
            raise InvalidConfigError(
                f"model {m.name}/{m.version} codes {m.sample_rate_hz:g} Hz signals; the stream says "
                f"{config.sample_rate_hz:g} Hz (resample it, or pick a model for that rate)"
            )
        check_channel_count(config.channel_count)
        try:
            self.dtype = SampleDtype.from_proto(config.dtype)
        except CorruptCodeError:
            raise InvalidConfigError(
                "dtype must be SAMPLE_DTYPE_FLOAT32 or SAMPLE_DTYPE_INT16"
            ) from None
        self.channels = input_channels(
            config.channels, config.channel_count, self.dtype, m.normalization.units,
            m.normalization.scale,
        )  # fmt: skip
        self.plan = _plan(self.model, config.quality, config.channel_count)
        # a bit budget keeps the model's kernels: an update (about 100 bytes) would break it
        budget = self.plan.max_bits_per_sample is not None
        adapt = 0 if config.fixed_kernels or budget else m.adapt_after_samples
        self.coder = StreamCoder([self.plan] * config.channel_count, adapt)
        # the stream's own kernels: its checks run as background jobs, beside its coding
        self.adapter = (
            Adapter(self.plan, self.model.detector_for, self.model.detect) if adapt else None
        )  # the model's kernels detect through its shared session (thread-safe in ONNX Runtime)
        self._check: asyncio.Future[Kernels | None] | None = None
        self._block_s = self.plan.block_length / m.sample_rate_hz  # a block of signal, seconds
        self.batcher, self.telemetry, self.settings = batcher, telemetry, settings
        self.max_samples = int(settings.max_stream_seconds * m.sample_rate_hz)
        self.received = 0
        self.opened = time.monotonic()
        self.summary = codec_pb2.EncodeSummary()

    def started(self) -> codec_pb2.EncodeResponse:
        b = self.model.bundle
        return codec_pb2.EncodeResponse(started=codec_pb2.EncodeStarted(
            model=codes_pb2.ModelRef(name=b.ref.name, version=b.ref.version, manifest_sha256=b.manifest_sha256),
            codebook=self.model.codebook_proto, block_length=self.plan.block_length,
            channels=[c.output.to_proto() for c in self.channels], execution_provider=self.model.provider,
            worker=WORKER,
        ))  # fmt: skip

    def _physical(self, samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """(channels, n) samples as sent to physical values in the model's units."""
        return np.stack(
            [c.to_model_units(row) for c, row in zip(self.channels, samples, strict=True)]
        )

    async def push(self, data: bytes, background: bool = False) -> list[codec_pb2.EncodeResponse]:
        """Code one chunk; InvalidSignalError (the chunk is refused whole) leaves the stream intact.
        The numerical work runs in `self.pool`, off the event loop, as background work if asked
        (the stream is far ahead of real time)."""
        if len(data) > self.settings.max_chunk_bytes:
            raise InvalidSignalError(
                f"chunk of {len(data)} bytes is over the {self.settings.max_chunk_bytes}-byte limit"
            )
        started = time.perf_counter()
        if background:
            return await self._push_bulk(data, started)
        # the chunk is checked whole and its first slice windowed in one trip to the threads (a
        # real-time chunk is one slice); a larger one then goes on a slice a trip
        samples, windows = await self._off_loop(False, self._take, data)
        out = await self._code(windows, started)
        for lo in range(SLICE_SAMPLES, samples.shape[1], SLICE_SAMPLES):
            windows = await self._off_loop(
                False, self._windows, samples[:, lo : lo + SLICE_SAMPLES]
            )
            out += await self._code(windows, started)
        return out + await self._adapt(started)

    async def _push_bulk(self, data: bytes, started: float) -> list[codec_pb2.EncodeResponse]:
        """A chunk of a stream far ahead of real time, as background work: the stream first waits
        for a check of its kernels, so that its samples do not pile up behind the windows the
        check holds (a live one's is answered by the Encode loop as soon as it is done); then each
        slice is windowed, detected and coded in one trip to the threads."""
        out = await self._adapt(started, True, wait=True)
        samples, coded = await self._off_loop(True, self._take_here, data, started)
        out += coded
        for lo in range(SLICE_SAMPLES, samples.shape[1], SLICE_SAMPLES):
            part = samples[:, lo : lo + SLICE_SAMPLES]
            out += await self._off_loop(True, self._code_here, part, started)
        return out + await self._adapt(started, True)

    def _take_here(
        self, data: bytes, started: float
    ) -> tuple[npt.NDArray[np.float64], list[codec_pb2.EncodeResponse]]:
        samples = self._accepted_samples(data)
        return samples, self._code_here(samples[:, :SLICE_SAMPLES], started)

    def _code_here(
        self, samples: npt.NDArray[np.float64], started: float
    ) -> list[codec_pb2.EncodeResponse]:
        """Background work, in a codec thread: a slice's windows detected here, not batched with
        other streams' (the service codes one such stream at a time: a batch would wait for
        company that cannot come), and coded."""
        windows = self._windows(samples)
        flat = self.coder.to_detect(windows)
        shared = self.model.detect_windows([w for w in flat if w.generation == 0])
        own = [w for w in flat if w.generation]
        return self._accept(windows, _in_order(flat, shared, self._own_spikes(own)), started)

    async def _adapt(
        self, started: float, background: bool = False, wait: bool = False
    ) -> list[codec_pb2.EncodeResponse]:
        """Start a check of the stream's kernels that fell due, off the loop as background work
        (the threads drop it, and the stream keeps its kernels, when they have no room for it);
        answer one that is done (with `wait`, wait for it), and code the windows its answer lets
        out."""
        out: list[codec_pb2.EncodeResponse] = []
        m = self.model.manifest
        while self.adapter is not None:
            if self._check is None:
                request = self.coder.fit_due()
                if request is None:
                    return out
                # it has until the window after its checkpoint is due (about a block of signal
                # later, in real time) before it holds a block: half a block to start
                self._check = self.pool.run_spare(self.adapter.refit, request, owner=self,
                                                  start_within=self._block_s / 2)  # fmt: skip
            if not (wait or self._check.done()):
                return out
            check, self._check = self._check, None
            kernels, outcome = await check_outcome(check, f"{m.name}/{m.version}")
            self.telemetry.observe_check(m.name, m.version, outcome)
            windows = await self._off_loop(background, self.coder.update, kernels)
            out += await self._code(windows, started, background)
        return out

    @property
    def checking(self) -> asyncio.Future[Kernels | None] | None:
        """The check of the stream's kernels that is running, if any: the service answers it as
        soon as it is done, without waiting for the stream's next chunk."""
        return self._check

    async def answer_check(self, background: bool = False) -> list[codec_pb2.EncodeResponse]:
        """The blocks a finished check lets out, between two chunks of the stream (as background
        work for a stream ahead of real time)."""
        return await self._adapt(time.perf_counter(), background)

    def close(self) -> None:
        """The stream is over, ended or not: a check not yet done is dropped."""
        if self._check is None:
            return
        if not self._check.done():
            self._check.cancel()
        elif not self._check.cancelled():
            self._check.exception()  # retrieved: a failed check left behind is not an error

    def _take(self, data: bytes) -> tuple[npt.NDArray[np.float64], list[list[Window]]]:
        """The chunk's samples, once all of them are accepted, and its first slice's windows."""
        samples = self._accepted_samples(data)
        return samples, self._windows(samples[:, :SLICE_SAMPLES])

    def _accepted_samples(self, data: bytes) -> npt.NDArray[np.float64]:
        """The chunk's samples, or InvalidSignalError before any of them enters the stream."""
        samples = self._physical(unpack_samples(data, self.dtype, len(self.channels)))
        self._check_range(samples)
        if self.received + samples.shape[1] > self.max_samples:
            raise OverloadedError(
                f"the stream is over its limit of {self.settings.max_stream_seconds:g} s of signal"
            )
        self.received += samples.shape[1]
        return samples

    def _windows(self, samples: npt.NDArray[np.float64]) -> list[list[Window]]:
        return self.coder.push(samples)

    async def _off_loop(self, background: bool, call: Callable[..., T], *args: Any) -> T:
        return await self.pool.run(call, *args, owner=self, background=background)

    def _check_range(self, samples: npt.NDArray[np.float64]) -> None:
        limit = MAX_MODEL_VALUE * self.plan.scale
        beyond = np.abs(samples) > limit
        if np.any(beyond):
            channel, frame = (int(i) for i in np.argwhere(beyond)[0])
            info = self.channels[channel].output  # samples are in the model's units by now
            raise InvalidSignalError(
                f"channel {channel} ({info.name}), frame {frame}: {samples[channel, frame]:.3g} "
                f"{info.units} is beyond the ±{limit:.3g} {info.units} this model accepts"
            )

    async def finish(self) -> list[codec_pb2.EncodeResponse]:
        """The stream ended: its last windows detected, then every open block coded, all off the
        event loop (a close storm of many streams must not stall the live ones)."""
        started = time.perf_counter()
        out = await self._code(self.coder.finish(), started)
        out += await self._adapt(started, wait=True)
        out += await self._off_loop(False, self._flush, started)
        out.append(codec_pb2.EncodeResponse(summary=self.summary))
        return out

    def _flush(self, started: float) -> list[codec_pb2.EncodeResponse]:
        return [self._respond(block, started) for block in self.coder.ready()]

    async def _code(
        self, windows: list[list[Window]], started: float, background: bool = False
    ) -> list[codec_pb2.EncodeResponse]:
        out: list[codec_pb2.EncodeResponse] = []
        longest = max((len(ws) for ws in windows), default=0)
        for lo in range(0, longest, SLICE_WINDOWS):  # small steps, so other streams interleave
            part = [ws[lo : lo + SLICE_WINDOWS] for ws in windows]
            flat = self.coder.to_detect(part)  # none where the coders place spikes at the beats
            spikes = await self._detect(flat, background)
            out += await self._off_loop(background, self._accept, part, spikes, started)
        return out

    async def _detect(self, windows: list[Window], background: bool) -> list[Spikes]:
        """Spikes of each window: the model's kernels' through the shared, batched encoder; the
        stream's own kernels' through its own, in the codec threads."""
        shared = [w for w in windows if w.generation == 0]
        found = await self.batcher.detect(self.model, shared) if shared else []
        own = [w for w in windows if w.generation]
        theirs = await self._off_loop(background, self._own_spikes, own) if own else []
        return _in_order(windows, found, theirs)

    def _own_spikes(self, windows: list[Window]) -> list[Spikes]:
        if not windows:
            return []
        assert self.adapter is not None  # only a stream that adapts has windows of its own
        return [self.adapter.spikes(w) for w in windows]

    def ahead_s(self, chunk_bytes: int = 0) -> float:
        """How far the stream's signal (with a chunk of `chunk_bytes`) is ahead of the wall
        clock since it opened."""
        frames = chunk_bytes // (self.dtype.numpy.itemsize * len(self.channels))
        rate = self.model.manifest.sample_rate_hz
        return (self.received + frames) / rate - (time.monotonic() - self.opened)

    def _accept(
        self, windows: list[list[Window]], spikes: list[Spikes], started: float
    ) -> list[codec_pb2.EncodeResponse]:
        return [self._respond(block, started) for block in self.coder.accept(windows, spikes)]

    def _respond(self, coded: CodedBlock, started: float) -> codec_pb2.EncodeResponse:
        parts, message = coded.parts, coded.message()
        size = message.ByteSize()
        n = coded.sample_count * len(parts)
        x = np.concatenate([p.signal - p.signal.mean() for p in parts])
        x_hat = np.concatenate([p.reconstruction - p.signal.mean() for p in parts])
        spikes = sum(p.code.san.spike_count for p in parts)
        inv_cr = metrics.inverse_compression_ratio(spikes, self.plan.codebook.weight_count, n)
        loss = metrics.normalized_loss(x, x_hat)
        raw = metrics.raw_bytes(n, self.dtype.bits)
        quality = codec_pb2.BlockQuality(
            bits_per_sample=metrics.bits_per_sample(size, n), compression_ratio=metrics.compression_ratio(raw, size),
            prdn_percent=metrics.prdn(x, x_hat), normalized_loss=loss, inverse_compression_ratio=inv_cr,
            flithos=metrics.flithos(inv_cr, loss), spike_count=spikes,
            residual_count=sum(p.code.residual.indices.size for p in parts if p.code.residual is not None),
            target_missed="; ".join(f"channel {p.code.channel}: {p.missed}" for p in parts if p.missed),
        )  # fmt: skip
        m = self.model.manifest
        self.telemetry.observe_block(
            m.name, m.version, compression_ratio=quality.compression_ratio, bits_per_sample=quality.bits_per_sample,
            normalized_loss=loss, prdn_percent=quality.prdn_percent, flithos=quality.flithos, samples=n,
            raw_bytes=int(raw), encoded_bytes=size, latency_s=time.perf_counter() - started,
            beat_agreement_ratio=_beat_agreement(parts, m.sample_rate_hz) if self.model.measures_beats else None,
        )  # fmt: skip
        self.summary.block_count += 1
        self.summary.sample_count = coded.start + coded.sample_count
        self.summary.code_bytes += size
        return codec_pb2.EncodeResponse(block=message, quality=quality)
