"""One Encode or Decode stream: its config, its coders or decoder, and what it answers."""

from __future__ import annotations

import math
import time

import numpy as np
import numpy.typing as npt

from sancodec import BlockCode, Codebook, StreamingDecoder, decode_block, metrics
from sancodec.beats import kept_beats
from sancodec.errors import (
    CorruptCodeError,
    InvalidConfigError,
    InvalidSignalError,
    OverloadedError,
)
from sancodec.payload import block_message
from sancodec.samples import SampleDtype, unpack_samples
from sancodec.streamcoder import ChannelCoder, CodedChannel, CodingPlan, Window
from sancodec.v1 import codec_pb2, codes_pb2
from server.batcher import Batcher
from server.channels import input_channels, output_channels
from server.config import ServerConfig
from server.repository import LoadedModel, ModelRepository
from server.telemetry import Telemetry

__all__ = ["DecodeSession", "EncodeSession"]

MAX_CHANNELS = 256
RATE_TOLERANCE = 0.005  # relative: 360 Hz models take 358.2 to 361.8 Hz


def _plan(model: LoadedModel, quality: codec_pb2.QualityTarget, channels: int) -> CodingPlan:
    target = quality.WhichOneof("target")
    value = getattr(quality, target) if target else None
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InvalidConfigError(f"{target} must be positive, got {value}")
    return CodingPlan.from_manifest(
        model.manifest, channels=channels, **({target: value} if target else {})
    )


def _beat_agreement(parts: list[CodedChannel], sample_rate_hz: float) -> float | None:
    """The share of the block's beats (all channels) that its reconstruction keeps; None when
    the block has no beat."""
    found = [kept_beats(p.signal, p.reconstruction, sample_rate_hz) for p in parts]
    beats = sum(n for n, _ in found)
    return sum(kept for _, kept in found) / beats if beats else None


class EncodeSession:
    def __init__(self, config: codec_pb2.EncodeConfig, repository: ModelRepository, settings: ServerConfig,
                 batcher: Batcher, telemetry: Telemetry) -> None:  # fmt: skip
        self.model = repository.get(config.model, config.model_version)
        m = self.model.manifest
        if not abs(config.sample_rate_hz - m.sample_rate_hz) <= RATE_TOLERANCE * m.sample_rate_hz:
            raise InvalidConfigError(
                f"model {m.name}/{m.version} codes {m.sample_rate_hz:g} Hz signals; the stream says "
                f"{config.sample_rate_hz:g} Hz (resample it, or pick a model for that rate)"
            )
        if not 0 < config.channel_count <= MAX_CHANNELS:
            raise InvalidConfigError(
                f"channel count must be 1..{MAX_CHANNELS}, got {config.channel_count}"
            )
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
        self.coders = [ChannelCoder(self.plan, c) for c in range(config.channel_count)]
        self.batcher, self.telemetry, self.settings = batcher, telemetry, settings
        self.max_samples = int(settings.max_stream_seconds * m.sample_rate_hz)
        self.received = 0
        self.summary = codec_pb2.EncodeSummary()
        self._ready: dict[int, dict[int, CodedChannel]] = {}

    def started(self) -> codec_pb2.EncodeResponse:
        b = self.model.bundle
        return codec_pb2.EncodeResponse(started=codec_pb2.EncodeStarted(
            model=codes_pb2.ModelRef(name=b.ref.name, version=b.ref.version, manifest_sha256=b.manifest_sha256),
            codebook=self.plan.codebook.to_proto(), block_length=self.plan.block_length,
            channels=[c.output.to_proto() for c in self.channels], execution_provider=self.model.provider,
        ))  # fmt: skip

    def _physical(self, samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """(channels, n) samples as sent to physical values in the model's units."""
        return np.stack(
            [c.to_model_units(row) for c, row in zip(self.channels, samples, strict=True)]
        )

    async def push(self, data: bytes) -> list[codec_pb2.EncodeResponse]:
        """Code one chunk; InvalidSignalError (the chunk is refused whole) leaves the stream intact."""
        if len(data) > self.settings.max_chunk_bytes:
            raise InvalidSignalError(
                f"chunk of {len(data)} bytes is over the {self.settings.max_chunk_bytes}-byte limit"
            )
        samples = self._physical(unpack_samples(data, self.dtype, len(self.coders)))
        if self.received + samples.shape[1] > self.max_samples:
            raise OverloadedError(
                f"the stream is over its limit of {self.settings.max_stream_seconds:g} s of signal"
            )
        self.received += samples.shape[1]
        started = time.perf_counter()
        windows = [coder.push(row) for coder, row in zip(self.coders, samples, strict=True)]
        return await self._code(windows, started)

    async def finish(self) -> list[codec_pb2.EncodeResponse]:
        started = time.perf_counter()
        out = await self._code([coder.finish() for coder in self.coders], started)
        out += self._assemble([coder.ready() for coder in self.coders], started)
        out.append(codec_pb2.EncodeResponse(summary=self.summary))
        return out

    async def _code(
        self, windows: list[list[Window]], started: float
    ) -> list[codec_pb2.EncodeResponse]:
        flat = [w for ws in windows for w in ws]
        spikes = iter(await self.batcher.detect(self.model, flat))
        coded = [
            [c for w in ws for c in coder.accept(w, next(spikes))]
            for coder, ws in zip(self.coders, windows, strict=True)
        ]
        return self._assemble(coded, started)

    def _assemble(
        self, coded: list[list[CodedChannel]], started: float
    ) -> list[codec_pb2.EncodeResponse]:
        for channel, blocks in enumerate(coded):
            for block in blocks:
                self._ready.setdefault(block.index, {})[channel] = block
        out = []
        for index in sorted(
            i for i, chans in self._ready.items() if len(chans) == len(self.coders)
        ):
            out.append(self._respond(list(self._ready.pop(index).values()), started))
        return out

    def _respond(self, parts: list[CodedChannel], started: float) -> codec_pb2.EncodeResponse:
        block = BlockCode(parts[0].start, parts[0].signal.size, tuple(p.code for p in parts))
        message = block_message(
            block.start_sample, block.sample_count, [(p.code.channel, p.payload) for p in parts]
        )
        size = message.ByteSize()
        n = block.sample_count * len(parts)
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
            beat_agreement_ratio=_beat_agreement(parts, m.sample_rate_hz) if m.modality == "ecg" else None,
        )  # fmt: skip
        self.summary.block_count += 1
        self.summary.sample_count = block.end_sample
        self.summary.code_bytes += size
        return codec_pb2.EncodeResponse(block=message, quality=quality)


class DecodeSession:
    def __init__(
        self, config: codec_pb2.DecodeConfig, repository: ModelRepository, telemetry: Telemetry
    ) -> None:
        if not 0 < config.channel_count <= MAX_CHANNELS:
            raise InvalidConfigError(
                f"channel count must be 1..{MAX_CHANNELS}, got {config.channel_count}"
            )
        scale: float | None
        if config.HasField("codebook"):
            try:
                codebook, units, scale = Codebook.from_proto(config.codebook), "", None
            except CorruptCodeError as exc:
                raise InvalidConfigError(f"the config's codebook is invalid: {exc}") from None
            self.key = ("custom", "0")
        else:
            model = repository.get(config.model, config.model_version)
            codebook, units, scale = (
                model.manifest.codebook,
                model.manifest.normalization.units,
                model.manifest.normalization.scale,
            )
            self.key = model.key
        self.channels = output_channels(config.channels, config.channel_count, units, scale)
        self.decoder = StreamingDecoder(codebook, config.channel_count)
        self.telemetry = telemetry

    def push(self, message: codes_pb2.EncodedBlock) -> codec_pb2.DecodeResponse:
        """Decode one block; CorruptCodeError names what is wrong with it."""
        started = time.perf_counter()
        block = decode_block(message, self.decoder.codebook)
        start, samples = self.decoder.push(block)
        self.telemetry.observe_decoded_block(
            *self.key, block.sample_count, time.perf_counter() - started
        )
        return self._chunk(start, samples)

    def finish(self) -> codec_pb2.DecodeResponse:
        return self._chunk(*self.decoder.finish())

    def _chunk(self, start: int, samples: npt.NDArray[np.float64]) -> codec_pb2.DecodeResponse:
        physical = np.stack(
            [c.to_physical(row) for c, row in zip(self.channels, samples, strict=True)]
        )
        data = physical.T.astype("<f4").tobytes()
        return codec_pb2.DecodeResponse(
            chunk=codec_pb2.DecodedChunk(
                start_sample=start, sample_count=samples.shape[1], samples=data
            )
        )
