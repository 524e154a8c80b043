"""Generate the Python stubs of proto/ into sancodec/v1/: `python tools/genproto.py [OUT_DIR]`."""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
OURS = PROTO_ROOT / "sancodec"  # proto/grpc/ holds the standard health .proto: grpcio has its stubs


def generate(out_dir: Path) -> None:
    """Run protoc on sancodec's .proto files, writing modules, type stubs and gRPC stubs to out_dir."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in OURS.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    bindir = Path(sys.executable).parent  # the venv's plugins, whether or not it is activated
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
