"""The health .proto shipped in proto/grpc/ is the one the server implements."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]


def _without_json_names(messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
    """protoc adds json_name to every field; grpcio's embedded descriptor leaves it out."""
    for message in messages:
        for field in message.field:
            field.ClearField("json_name")
        _without_json_names(message.nested_type)


def test_the_shipped_health_proto_matches_the_servers(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools is in the dev extra")
    from grpc_health.v1 import health_pb2

    out = tmp_path / "health.pb"
    args = [
        "protoc",
        f"-I{REPO / 'proto'}",
        f"--descriptor_set_out={out}",
        "grpc/health/v1/health.proto",
    ]
    assert protoc.main(args) == 0, f"protoc failed ({sys.executable})"
    shipped = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    served = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(served)
    _without_json_names(shipped.message_type)
    served.name = shipped.name  # grpcio names it grpc_health/v1/health.proto
    assert shipped == served
