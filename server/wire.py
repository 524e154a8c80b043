"""Service registration whose request readers never raise: bad bytes become a `Malformed` value
that the method answers with INVALID_ARGUMENT (DATA_LOSS inside Decode), with no traceback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from sancodec.errors import SancodecError

__all__ = ["Malformed", "checked", "register"]


@dataclass(frozen=True)
class Malformed:
    """A request message whose bytes did not parse as `type_name`."""

    type_name: str
    detail: str

    def describe(self) -> str:
        return f"a {self.type_name} message does not parse ({self.detail})"


def _reader(cls: type[Message]) -> Callable[[bytes], Message | Malformed]:
    name = cls.DESCRIPTOR.name

    def read(data: bytes) -> Message | Malformed:
        try:
            return cls.FromString(data)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            return Malformed(name, str(exc) or type(exc).__name__)

    return read


_BUILDERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def register(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor) -> None:
    """Add every method of `service` that `servicer` implements, with non-raising readers."""
    handlers = {}
    for method in service.methods:
        build = _BUILDERS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = build(
            getattr(servicer, method.name),
            request_deserializer=_reader(GetMessageClass(method.input_type)),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


async def checked(
    requests: AsyncIterator[Any], error: Callable[[str], SancodecError]
) -> AsyncIterator[Any]:
    """The stream's messages; a malformed one raises `error` naming its position."""
    index = 0
    async for request in requests:
        if isinstance(request, Malformed):
            raise error(f"message {index}: {request.describe()}")
        yield request
        index += 1
