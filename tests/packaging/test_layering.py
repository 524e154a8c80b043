"""Dependencies point one way: sancodec <- recordings <- {server, client, training}; the core
stays light, and none of the top three imports another (no exceptions listed)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TOP = {"server", "client", "training"}
FORBIDDEN = {
    # ONNX Runtime and onnx only inside functions of sancodec.encodergraph (checked below: importing
    # the core loads neither)
    "sancodec": {"recordings", *TOP, "torch", "grpc", "wfdb", "pyedflib"},
    "recordings": {*TOP, "torch", "grpc", "onnxruntime", "onnx"},
    "server": TOP - {"server"} | {"torch"},
    "client": TOP - {"client"} | {"torch", "onnxruntime"},
    "training": TOP - {"training"},
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
        return module.split(".", maxsplit=1)[0] in FORBIDDEN[package]

    offenders = {
        str(path.relative_to(REPO)): sorted(filter(bad, _imports(path)))
        for path in (REPO / package).rglob("*.py")
        if "v1" not in path.parts or package != "sancodec"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _loaded(*modules: str) -> set[str]:
    """The modules a fresh interpreter holds after importing these."""
    code = f"import sys, {', '.join(modules)}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(done.stdout.split())


def test_importing_the_core_loads_no_heavy_dependency() -> None:
    loaded = _loaded(
        "sancodec", "sancodec.fitting", "sancodec.encodergraph", "sancodec.kernelupdates"
    )
    assert not {"torch", "grpc", "onnxruntime", "onnx", "wfdb", "recordings"} & loaded


@pytest.mark.parametrize(
    "modules",
    [("client", "client.cli", "client.commands"), ("server", "server.app"), ("recordings",)],
)
def test_the_packages_load_no_torch(modules: tuple[str, ...]) -> None:
    loaded = _loaded(*modules)
    assert "sancodec" in loaded  # the import did run
    assert not {"torch", "training"} & loaded
