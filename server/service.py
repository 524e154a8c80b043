"""The sancodec.v1.CodecService on grpc.aio: streams, model metadata, and safe failure."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from sancodec.errors import (
    CorruptCodeError,
    InvalidSignalError,
    OverloadedError,
    ProtocolError,
    SancodecError,
    UnavailableError,
)
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2
from server.batcher import Batcher
from server.config import ServerConfig
from server.repository import LoadedModel, ModelRepository
from server.sessions import DecodeSession, EncodeSession
from server.status import grpc_code, message_status
from server.telemetry import Telemetry

Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ["CodecService"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def model_info(model: LoadedModel) -> codec_pb2.ModelInfo:
    m = model.manifest
    b = model.bundle
    metrics = {
        k: float(v)
        for k, v in dict(m.test_metrics).get("mean", {}).items()
        if isinstance(v, int | float)
    }
    return codec_pb2.ModelInfo(
        ref=codes_pb2.ModelRef(name=m.name, version=m.version, manifest_sha256=b.manifest_sha256),
        activation=m.activation, codebook=m.codebook.to_proto(), sample_rate_hz=m.sample_rate_hz,
        block_length=m.block_length, execution_provider=model.provider, test_metrics=metrics,
        description=m.description, units=m.normalization.units,
    )  # fmt: skip


class CodecService(codec_pb2_grpc.CodecServiceServicer):
    def __init__(
        self,
        repository: ModelRepository,
        settings: ServerConfig,
        batcher: Batcher,
        telemetry: Telemetry,
    ) -> None:
        self.repository, self.settings, self.batcher, self.telemetry = (
            repository,
            settings,
            batcher,
            telemetry,
        )
        self.ready = False
        self.draining = False
        self.active = 0

    async def _abort(self, context: Context, method: str, exc: BaseException) -> None:
        if isinstance(exc, SancodecError):
            code, message = grpc_code(exc), str(exc)
        else:  # the traceback goes to the log, never to the client
            log.exception("%s failed", method)
            code, message = (
                grpc.StatusCode.INTERNAL,
                "internal error; the server log has the details",
            )
        self.telemetry.observe_error(method, code.name)
        await context.abort(code, message)

    def _admit(self) -> None:
        if self.draining:
            raise UnavailableError("the server is shutting down; reconnect to another instance")
        if not self.ready:
            raise UnavailableError("the server is still loading its models")
        if self.active >= self.settings.max_streams:
            raise OverloadedError(
                f"the server holds its limit of {self.settings.max_streams} streams; retry later"
            )

    async def _unary(self, method: str, context: Context, call: Callable[[], Awaitable[T]]) -> T:
        started, code = time.perf_counter(), "OK"
        try:
            if not self.ready:
                raise UnavailableError("the server is still loading its models")
            return await call()
        except BaseException as exc:
            code = grpc_code(exc).name if isinstance(exc, SancodecError) else "INTERNAL"
            await self._abort(context, method, exc)
            raise
        finally:
            self.telemetry.observe_rpc(method, code, time.perf_counter() - started)

    async def GetModel(
        self, request: codec_pb2.GetModelRequest, context: Context
    ) -> codec_pb2.GetModelResponse:
        async def call() -> codec_pb2.GetModelResponse:
            return codec_pb2.GetModelResponse(
                model=model_info(self.repository.get(request.name, request.version))
            )

        return await self._unary("GetModel", context, call)

    async def ListModels(
        self, request: codec_pb2.ListModelsRequest, context: Context
    ) -> codec_pb2.ListModelsResponse:
        async def call() -> codec_pb2.ListModelsResponse:
            return codec_pb2.ListModelsResponse(
                models=[model_info(m) for m in self.repository.models()]
            )

        return await self._unary("ListModels", context, call)

    async def Encode(
        self, requests: AsyncIterator[codec_pb2.EncodeRequest], context: Context
    ) -> AsyncIterator[codec_pb2.EncodeResponse]:
        async for response in self._stream("Encode", requests, context, self._encode):
            yield response

    async def Decode(
        self, requests: AsyncIterator[codec_pb2.DecodeRequest], context: Context
    ) -> AsyncIterator[codec_pb2.DecodeResponse]:
        async for response in self._stream("Decode", requests, context, self._decode):
            yield response

    async def _stream(self, method: str, requests: AsyncIterator[Any], context: Context,
                      body: Callable[[AsyncIterator[Any]], AsyncIterator[Any]]) -> AsyncIterator[Any]:  # fmt: skip
        started, code = time.perf_counter(), "OK"
        try:
            self._admit()  # a refused stream is never counted as active
        except SancodecError as exc:
            self.telemetry.observe_rpc(method, grpc_code(exc).name, time.perf_counter() - started)
            await self._abort(context, method, exc)
            raise
        self.active += 1
        self.telemetry.stream_started(method)
        try:
            async for response in body(requests):
                yield response
        except BaseException as exc:
            code = grpc_code(exc).name if isinstance(exc, SancodecError) else "CANCELLED"
            if isinstance(exc, SancodecError) or not isinstance(
                exc, (GeneratorExit, grpc.aio.AbortError)
            ):
                await self._abort(context, method, exc)
            raise
        finally:
            self.active -= 1
            self.telemetry.stream_ended(method)
            self.telemetry.observe_rpc(method, code, time.perf_counter() - started)

    async def _first(self, requests: AsyncIterator[Any], kind: str) -> Any:
        first = await anext(requests, None)
        if first is None or not first.HasField("config"):
            raise ProtocolError(f"the first message of a {kind} stream must be its config")
        return first.config

    async def _encode(
        self, requests: AsyncIterator[codec_pb2.EncodeRequest]
    ) -> AsyncIterator[codec_pb2.EncodeResponse]:
        session = EncodeSession(
            await self._first(requests, "Encode"),
            self.repository,
            self.settings,
            self.batcher,
            self.telemetry,
        )
        yield session.started()
        index = 0
        async for request in requests:
            if not request.HasField("chunk"):
                raise ProtocolError(f"chunk {index} is a second config; a stream has one")
            try:
                responses = await session.push(request.chunk.samples)
            except InvalidSignalError as exc:  # the chunk is refused whole; the stream goes on
                self.telemetry.observe_error("Encode", grpc_code(exc).name)
                session.summary.rejected_chunk_count += 1
                responses = [codec_pb2.EncodeResponse(status=message_status(index, exc))]
            for response in responses:
                yield response
            index += 1
        for response in await session.finish():
            yield response

    async def _decode(
        self, requests: AsyncIterator[codec_pb2.DecodeRequest]
    ) -> AsyncIterator[codec_pb2.DecodeResponse]:
        session = DecodeSession(
            await self._first(requests, "Decode"), self.repository, self.telemetry
        )
        index = 0
        async for request in requests:
            if not request.HasField("block"):
                raise ProtocolError(f"block {index} is a second config; a stream has one")
            try:
                yield session.push(request.block)
            except CorruptCodeError as exc:
                raise CorruptCodeError(f"block {index}: {exc}") from None
            index += 1
        yield session.finish()
