"""`CodecClient`: talk to a sancodec server; callers catch `sancodec.errors`, never grpc's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sancodec import BlockCode, ChannelInfo, Codebook, ModelRef, StreamHeader
from sancodec.errors import CorruptCodeError, SancodecError, UnavailableError, error_for_status
from sancodec.payload import decode_block, encode_block
from sancodec.samples import SampleDtype, pack_samples
from sancodec.v1 import codec_pb2, codec_pb2_grpc

__all__ = ["CodecClient", "EncodeEvent", "EncodeResult", "ModelSummary"]

T = TypeVar("T")
CONNECT_ATTEMPTS = 3


@dataclass(frozen=True)
class ModelSummary:
    name: str
    version: str
    activation: str
    sample_rate_hz: float
    block_length: int
    execution_provider: str
    kernel_sizes: tuple[int, ...]
    decoder_mode: str
    residual: str
    test_metrics: dict[str, float]
    description: str
    units: str = ""  # the physical units the model codes, e.g. "mV"

    @classmethod
    def from_proto(cls, m: codec_pb2.ModelInfo) -> ModelSummary:
        codebook = Codebook.from_proto(m.codebook)
        residual = (
            f"{codebook.residual.wavelet} level {codebook.residual.level}"
            if codebook.residual
            else "none"
        )
        return cls(m.ref.name, m.ref.version, m.activation, m.sample_rate_hz, m.block_length,
                   m.execution_provider, tuple(k.size for k in codebook.kernels),
                   codebook.decoder_mode.value, residual, dict(m.test_metrics), m.description, m.units)  # fmt: skip


@dataclass(frozen=True, eq=False)
class EncodeEvent:
    """One answer of an Encode stream: a block with its quality, or an in-band problem."""

    block: BlockCode | None = None
    quality: codec_pb2.BlockQuality | None = None
    problem: codec_pb2.MessageStatus | None = None


@dataclass(eq=False)
class EncodeResult:
    header: StreamHeader
    execution_provider: str
    blocks: list[BlockCode] = field(default_factory=list)
    qualities: list[codec_pb2.BlockQuality] = field(default_factory=list)
    problems: list[codec_pb2.MessageStatus] = field(default_factory=list)
    summary: codec_pb2.EncodeSummary | None = None


def _header(
    started: codec_pb2.EncodeStarted, rate: float, dtype: SampleDtype, metadata: dict[str, str]
) -> StreamHeader:
    model = ModelRef(started.model.name, started.model.version, started.model.manifest_sha256)
    channels = tuple(ChannelInfo.from_proto(c) for c in started.channels)
    return StreamHeader(model, Codebook.from_proto(started.codebook), rate, started.block_length, channels,
                        dtype, metadata=metadata)  # fmt: skip


def _signal_channel(c: ChannelInfo) -> codec_pb2.SignalChannel:
    """What a channel's samples are (units, ADC); offset and scale describe decoded output."""
    return codec_pb2.SignalChannel(name=c.name, units=c.units, adc_gain=c.adc_gain, adc_baseline=c.adc_baseline,
                                   adc_resolution_bits=c.adc_resolution_bits)  # fmt: skip


class CodecClient:
    """A connection to a server: plain, TLS (`tls_ca`), mTLS (plus `client_cert`/`client_key`),
    and a bearer `token`. Every call has a deadline; UNAVAILABLE at connect is retried.

    `address` is host:port or any gRPC target. With `round_robin`, calls go in turn to every
    address the name resolves to (a headless Service's pods, "dns:///name:port"); otherwise to
    the first one that answers (gRPC's pick_first)."""

    def __init__(self, address: str, *, tls_ca: Path | None = None, client_cert: Path | None = None,
                 client_key: Path | None = None, token: str | None = None, timeout_s: float = 30.0,
                 stream_timeout_s: float | None = None, round_robin: bool = False) -> None:  # fmt: skip
        self.address, self.timeout_s, self.stream_timeout_s = address, timeout_s, stream_timeout_s
        options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ]
        if round_robin:
            options.append(("grpc.lb_policy_name", "round_robin"))
        if tls_ca is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            key = client_key.read_bytes() if client_key else None
            chain = client_cert.read_bytes() if client_cert else None
            credentials = grpc.ssl_channel_credentials(tls_ca.read_bytes(), key, chain)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = codec_pb2_grpc.CodecServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CodecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, call: Callable[[], T]) -> T:
        """Run a call, retrying UNAVAILABLE (a server starting or restarting), mapping errors."""
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                return call()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
                if code == grpc.StatusCode.UNAVAILABLE and attempt + 1 < CONNECT_ATTEMPTS:
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise _error(exc, self.address) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self) -> None:
        """Streams cannot be retried once sent, so wait for the connection first."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.timeout_s)
        except grpc.FutureTimeoutError:
            raise UnavailableError(
                f"no sancodec server answers at {self.address} (waited {self.timeout_s:g} s)"
            ) from None

    def health(self) -> str:
        request = health_pb2.HealthCheckRequest(service="sancodec.v1.CodecService")
        response = self._call(lambda: self._health.Check(request, timeout=self.timeout_s))
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def models(self) -> list[ModelSummary]:
        response = self._call(
            lambda: self._stub.ListModels(
                codec_pb2.ListModelsRequest(), timeout=self.timeout_s, metadata=self._metadata
            )
        )
        return [ModelSummary.from_proto(m) for m in response.models]

    def model(self, name: str, version: str = "") -> ModelSummary:
        request = codec_pb2.GetModelRequest(name=name, version=version)
        response = self._call(
            lambda: self._stub.GetModel(request, timeout=self.timeout_s, metadata=self._metadata)
        )
        return ModelSummary.from_proto(response.model)

    def encode_events(self, chunks: Iterable[npt.NDArray[Any]], *, sample_rate_hz: float, channel_count: int,
                      model: str = "ecg", version: str = "", dtype: SampleDtype = SampleDtype.FLOAT32,
                      channels: Sequence[ChannelInfo] = (), max_prdn_percent: float | None = None,
                      max_bits_per_sample: float | None = None, metadata: dict[str, str] | None = None,
                      stream_prdn_percent: float | None = None, fixed_kernels: bool = False,
                      ) -> Iterator[StreamHeader | EncodeEvent | codec_pb2.EncodeSummary]:  # fmt: skip
        """Stream (channels, k) chunks; yields the stream header first, then events as they come,
        and the summary last. A model that adapts fits its kernels to the stream and sends them
        in-band (a block's `kernels`) unless `fixed_kernels`."""
        quality = codec_pb2.QualityTarget()
        if max_prdn_percent is not None:
            quality.max_prdn_percent = max_prdn_percent
        if max_bits_per_sample is not None:
            quality.max_bits_per_sample = max_bits_per_sample
        if stream_prdn_percent is not None:
            quality.stream_prdn_percent = stream_prdn_percent
        config = codec_pb2.EncodeConfig(model=model, model_version=version, sample_rate_hz=sample_rate_hz,
                                        channel_count=channel_count, dtype=dtype.to_proto(), quality=quality,
                                        channels=[_signal_channel(c) for c in channels],
                                        fixed_kernels=fixed_kernels)  # fmt: skip

        def requests() -> Iterator[codec_pb2.EncodeRequest]:
            yield codec_pb2.EncodeRequest(config=config)
            for chunk in chunks:
                yield codec_pb2.EncodeRequest(
                    chunk=codec_pb2.SignalChunk(samples=pack_samples(chunk, dtype))
                )

        self._wait_ready()
        responses = self._stub.Encode(
            requests(), timeout=self.stream_timeout_s, metadata=self._metadata
        )
        header: StreamHeader | None = None
        codebook = None  # the stream's, as the blocks' updates leave it
        try:
            for response in responses:
                kind = response.WhichOneof("payload")
                if kind == "started":
                    header = _header(response.started, sample_rate_hz, dtype, metadata or {})
                    codebook = header.codebook
                    yield header
                elif kind == "block":
                    if codebook is None:
                        raise CorruptCodeError("the server sent a block before its codebook")
                    block = decode_block(response.block, codebook)
                    codebook = codebook.updated(block.kernels)
                    yield EncodeEvent(block=block, quality=response.quality)
                elif kind == "status":
                    yield EncodeEvent(problem=response.status)
                else:
                    yield response.summary
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None

    def encode(
        self, signal: npt.NDArray[Any], *, sample_rate_hz: float, chunk: int = 4096, **options: Any
    ) -> EncodeResult:
        """Encode a whole (channels, n) array."""
        chunks = (signal[:, lo : lo + chunk] for lo in range(0, signal.shape[1], chunk))
        result: EncodeResult | None = None
        for event in self.encode_events(
            chunks, sample_rate_hz=sample_rate_hz, channel_count=signal.shape[0], **options
        ):
            if isinstance(event, StreamHeader):
                result = EncodeResult(event, "")
            elif isinstance(event, EncodeEvent) and result is not None:
                if event.block is not None and event.quality is not None:
                    result.blocks.append(event.block)
                    result.qualities.append(event.quality)
                elif event.problem is not None:
                    result.problems.append(event.problem)
            elif result is not None:
                result.summary = event  # type: ignore[assignment]
        if result is None:
            raise UnavailableError(
                f"the server at {self.address} ended the stream without answering"
            )
        return result

    def decode(self, blocks: Iterable[BlockCode], header: StreamHeader) -> npt.NDArray[np.float64]:
        """Decode on the server: (channels, n) samples in physical units."""
        config = codec_pb2.DecodeConfig(codebook=header.codebook.to_proto(), channel_count=header.channel_count,
                                        channels=[c.to_proto() for c in header.channels])  # fmt: skip

        def requests() -> Iterator[codec_pb2.DecodeRequest]:
            yield codec_pb2.DecodeRequest(config=config)
            codebook = header.codebook
            for block in blocks:
                yield codec_pb2.DecodeRequest(block=encode_block(block, codebook))
                codebook = codebook.updated(block.kernels)

        self._wait_ready()
        responses = self._stub.Decode(
            requests(), timeout=self.stream_timeout_s, metadata=self._metadata
        )
        parts = []
        try:
            for response in responses:
                chunk = response.chunk
                parts.append(
                    np.frombuffer(chunk.samples, "<f4").reshape(-1, header.channel_count).T
                )
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        return (
            np.concatenate(parts, axis=1).astype(np.float64)
            if parts
            else np.zeros((header.channel_count, 0))
        )


def _error(exc: grpc.RpcError, address: str) -> SancodecError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE and (
        "connect" in (details or "").lower() or "dns" in (details or "").lower()
    ):
        details = f"no sancodec server answers at {address} ({details})"
    return error_for_status(code.name, details or code.name)
