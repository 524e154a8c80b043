"""Server reflection (grpc.reflection.v1alpha), with bad bytes answered INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from server.wire import Malformed, register

__all__ = ["enable_reflection"]

Context = grpc.aio.ServicerContext[Any, Any]


class _Reflection(ReflectionServicer):  # type: ignore[misc]
    async def ServerReflectionInfo(
        self, requests: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async def parsed() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            async for request in requests:
                if isinstance(request, Malformed):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())
                yield request

        async for response in super().ServerReflectionInfo(parsed(), context):
            yield response


def enable_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    service = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
    register(server, _Reflection((*service_names, reflection.SERVICE_NAME)), service)
