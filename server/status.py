"""The one mapping from sancodec errors to gRPC status codes (and in-band message statuses)."""

from __future__ import annotations

import grpc

from sancodec.errors import SancodecError
from sancodec.v1 import codec_pb2

__all__ = ["grpc_code", "message_status"]


def grpc_code(error: SancodecError) -> grpc.StatusCode:
    """The status code an error's class names (INTERNAL for anything unnamed)."""
    return getattr(grpc.StatusCode, error.status_code, grpc.StatusCode.INTERNAL)


def message_status(index: int, error: SancodecError) -> codec_pb2.MessageStatus:
    """An in-band status for one bad message of a stream that goes on."""
    code = grpc_code(error).value[0]
    return codec_pb2.MessageStatus(index=index, code=code, message=str(error))
