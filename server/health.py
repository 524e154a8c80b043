"""The standard grpc.health.v1 service, with its watches capped and bad requests answered."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from sancodec.errors import OverloadedError
from server.admission import Admission
from server.wire import Malformed

__all__ = ["Health"]

Context = grpc.aio.ServicerContext[Any, Any]


class Health(health_aio.HealthServicer):  # type: ignore[misc]
    """Check answers anyone (load balancers probe without a token); each Watch holds a stream,
    so watches count against the admission's limits."""

    def __init__(self, admission: Admission) -> None:
        super().__init__()
        self.admission = admission

    async def Check(
        self, request: health_pb2.HealthCheckRequest | Malformed, context: Context
    ) -> health_pb2.HealthCheckResponse:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())
        return await super().Check(request, context)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest | Malformed, context: Context
    ) -> None:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.describe())
        peer = context.peer()
        try:
            self.admission.admit_watch(peer)
        except OverloadedError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        try:
            await super().Watch(request, context)
        finally:
            self.admission.release_watch(peer)
