"""Dependencies point one way: sancodec <- {server, client, training}; the core stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "sancodec": {
        "server",
        "client",
        "training",
        "torch",
        "grpc",
        "onnxruntime",
        "onnx",
        "wfdb",
        "pyedflib",
    },
    "server": {"client", "training", "torch"},
    "client": {"server", "training", "torch", "onnxruntime"},
    "training": {"server", "client"},
}
# The recording readers live in client/ (DESIGN.md) and need no gRPC; training reads data with them.
# `sancodec encode --adapt` fits kernels with PyTorch: client.commands imports training.adapt
# inside that one function, so the client itself never loads torch (checked below).
ALLOWED = {
    "training": {"client.recordings", "client.recording_formats"},
    "client": {"training.adapt"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    def bad(module: str) -> bool:
        return module.split(".", maxsplit=1)[0] in FORBIDDEN[package] and module not in ALLOWED.get(
            package, set()
        )

    offenders = {
        str(path.relative_to(REPO)): sorted(filter(bad, _imports(path)))
        for path in (REPO / package).rglob("*.py")
        if "v1" not in path.parts or package != "sancodec"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_the_core_loads_no_heavy_dependency() -> None:
    code = "import sys, sancodec; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert not {"torch", "grpc", "onnxruntime", "wfdb"} & loaded


def test_the_client_loads_torch_only_for_adapt() -> None:
    code = "import sys, client.cli, client.commands; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout.split()
    )
    assert not {"torch", "training", "training.adapt"} & loaded
