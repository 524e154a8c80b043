"""The committed stubs under sancodec/v1/ are exactly what protoc makes of proto/."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_regenerating_the_stubs_gives_no_diff(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.fail("grpcio-tools is missing: install the dev extra")
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "genproto.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    committed = sorted(p.relative_to(REPO) for p in (REPO / "sancodec" / "v1").glob("*_pb2*"))
    assert generated == committed
    for path in generated:
        assert (tmp_path / path).read_bytes() == (REPO / path).read_bytes(), (
            f"{path} is stale: run make proto"
        )
