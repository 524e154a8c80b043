"""The sancodec.v1.CodecService on grpc.aio: streams, model metadata, and safe failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from sancodec.errors import (
    CorruptCodeError,
    InvalidInputError,
    InvalidSignalError,
    ProtocolError,
    SancodecError,
    UnavailableError,
)
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2
from server.admission import Admission, ByteBudget, Pacer, working_bytes
from server.batcher import Batcher
from server.codec_threads import CodecThreads
from server.config import ServerConfig
from server.decoding import DecodeSession
from server.repository import LoadedModel, ModelRepository
from server.sessions import EncodeSession
from server.status import grpc_code, message_status
from server.telemetry import Telemetry
from server.wire import Malformed, checked

Context = grpc.aio.ServicerContext[Any, Any]

__all__ = ["CodecService"]

log = logging.getLogger(__name__)
T = TypeVar("T")
BUDGET_WAIT_S = 10.0  # how long a chunk waits for room in the in-flight budget
BULK_AHEAD_S = 5.0  # a stream this far ahead of real time is bulk work: it yields to live ones


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
        adapt_after_samples=m.adapt_after_samples,
    )  # fmt: skip


class CodecService(codec_pb2_grpc.CodecServiceServicer):
    def __init__(self, repository: ModelRepository, settings: ServerConfig, batcher: Batcher,
                 telemetry: Telemetry, admission: Admission, codec_pool: CodecThreads) -> None:  # fmt: skip
        self.repository, self.settings = repository, settings
        self.batcher, self.telemetry, self.admission = batcher, telemetry, admission
        self.budget = ByteBudget(settings.max_inflight_bytes, BUDGET_WAIT_S)
        self.bulk = asyncio.Semaphore(1)
        # codec work (decoding; coding chunks into blocks) runs off the event loop, two at a time
        self.codec_pool = codec_pool

    async def _abort(self, context: Context, method: str, exc: BaseException) -> None:
        if isinstance(exc, SancodecError):
            code, message = grpc_code(exc), str(exc)
            retry_s = getattr(exc, "retry_after_s", None)
            if retry_s is not None:  # gRPC's retry pushback, and words for a person
                context.set_trailing_metadata(
                    (("grpc-retry-pushback-ms", str(int(retry_s * 1000))),)
                )
                message += f"; retry in {retry_s:g} s"
        else:  # the traceback goes to the log, never to the client
            log.exception("%s failed", method)
            code, message = (
                grpc.StatusCode.INTERNAL,
                "internal error; the server log has the details",
            )
        self.telemetry.observe_error(method, code.name)
        await context.abort(code, message)

    async def _unary(self, method: str, context: Context, call: Callable[[], Awaitable[T]]) -> T:
        started, code = time.perf_counter(), "OK"
        try:
            if not self.admission.ready:
                raise UnavailableError("the server is still loading its models")
            return await call()
        except BaseException as exc:
            code = grpc_code(exc).name if isinstance(exc, SancodecError) else "INTERNAL"
            await self._abort(context, method, exc)
            raise
        finally:
            self.telemetry.observe_rpc(method, code, time.perf_counter() - started)

    async def GetModel(
        self, request: codec_pb2.GetModelRequest | Malformed, context: Context
    ) -> codec_pb2.GetModelResponse:
        async def call() -> codec_pb2.GetModelResponse:
            if isinstance(request, Malformed):
                raise InvalidInputError(request.describe())
            return codec_pb2.GetModelResponse(
                model=model_info(self.repository.get(request.name, request.version))
            )

        return await self._unary("GetModel", context, call)

    async def ListModels(
        self, request: codec_pb2.ListModelsRequest | Malformed, context: Context
    ) -> codec_pb2.ListModelsResponse:
        async def call() -> codec_pb2.ListModelsResponse:
            if isinstance(request, Malformed):
                raise InvalidInputError(request.describe())
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
        started, code, peer = time.perf_counter(), "OK", context.peer()
        try:
            self.admission.admit(peer)  # a refused stream is never counted as active
        except SancodecError as exc:
            self.telemetry.observe_rpc(method, grpc_code(exc).name, time.perf_counter() - started)
            await self._abort(context, method, exc)
            raise
        self.telemetry.stream_started(method)
        bad = InvalidInputError if method == "Encode" else CorruptCodeError
        pacer = Pacer(checked(requests, bad), self.settings, self.admission.drain)
        try:
            async for response in body(aiter(pacer)):
                yield response
            if pacer.ended_by is not None:  # its blocks are flushed and answered; now say why
                raise pacer.ended_by
        except BaseException as exc:
            code = grpc_code(exc).name if isinstance(exc, SancodecError) else "CANCELLED"
            if isinstance(exc, SancodecError) or not isinstance(
                exc, (GeneratorExit, grpc.aio.AbortError, asyncio.CancelledError)
            ):
                await self._abort(context, method, exc)
            raise
        finally:
            self.admission.release(peer)
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
        config = await self._first(requests, "Encode")
        session = EncodeSession(
            config, self.repository, self.settings, self.batcher, self.telemetry, self.codec_pool
        )
        yield session.started()
        index = 0
        try:
            async with contextlib.aclosing(self._arrivals(session, requests)) as arrivals:
                async for request in arrivals:
                    if request is None:  # a check of its kernels is done: its held blocks go
                        for response in await self._coded(session, session.answer_check):
                            yield response
                        continue
                    if not request.HasField("chunk"):
                        raise ProtocolError(f"chunk {index} is a second config; a stream has one")
                    for response in await self._push(session, index, request.chunk.samples):
                        yield response
                    index += 1
            for response in await session.finish():
                yield response
        finally:
            session.close()

    @staticmethod
    async def _arrivals(
        session: EncodeSession, requests: AsyncIterator[codec_pb2.EncodeRequest]
    ) -> AsyncGenerator[codec_pb2.EncodeRequest | None, None]:
        """The stream's messages in order, and None whenever a check of its kernels is done
        before the next message comes: the blocks the check holds then go out at once."""
        incoming: asyncio.Future[codec_pb2.EncodeRequest | None] | None = None
        try:
            while True:
                check = session.checking
                if check is not None:
                    if incoming is None:
                        incoming = asyncio.ensure_future(anext(requests, None))
                    if not incoming.done():
                        await asyncio.wait((incoming, check), return_when=asyncio.FIRST_COMPLETED)
                    if not incoming.done():
                        yield None
                        continue
                if incoming is not None:
                    request, incoming = await incoming, None
                else:  # no check running: no task a message
                    request = await anext(requests, None)
                if request is None:
                    return
                yield request
        finally:
            if incoming is not None:
                incoming.cancel()

    async def _push(
        self, session: EncodeSession, index: int, data: bytes
    ) -> list[codec_pb2.EncodeResponse]:
        size = working_bytes(
            min(len(data), self.settings.max_chunk_bytes), session.dtype.numpy.itemsize
        )
        await self.budget.acquire(size)  # waiting here holds the sender back (flow control)
        try:
            return await self._coded(session, lambda bulk: session.push(data, bulk), len(data))
        except InvalidSignalError as exc:  # the chunk is refused whole; the stream goes on
            self.telemetry.observe_error("Encode", grpc_code(exc).name)
            session.summary.rejected_chunk_count += 1
            named = InvalidSignalError(f"chunk {index}: {exc}")
            return [codec_pb2.EncodeResponse(status=message_status(index, named))]
        finally:
            await self.budget.release(size)

    async def _coded(self, session: EncodeSession,
                     work: Callable[[bool], Awaitable[list[codec_pb2.EncodeResponse]]],
                     chunk_bytes: int = 0) -> list[codec_pb2.EncodeResponse]:  # fmt: skip
        """`work(background)` for the stream (with a chunk of `chunk_bytes`): live; or, for a
        stream faster than real time, as background work, one such stream at a time."""
        if session.ahead_s(chunk_bytes) < BULK_AHEAD_S:
            return await work(False)
        async with self.bulk:
            return await work(True)

    async def _decode(
        self, requests: AsyncIterator[codec_pb2.DecodeRequest]
    ) -> AsyncIterator[codec_pb2.DecodeResponse]:
        config = await self._first(requests, "Decode")
        session = DecodeSession(config, self.repository, self.telemetry, self.settings)
        index = 0
        async for request in requests:
            if not request.HasField("block"):
                raise ProtocolError(f"block {index} is a second config; a stream has one")
            try:
                chunks = await self.codec_pool.run(session.push, request.block, owner=session)
            except CorruptCodeError as exc:
                raise CorruptCodeError(f"block {index}: {exc}") from None
            for chunk in chunks:
                yield chunk
            index += 1
        for chunk in session.finish():
            yield chunk
