"""Print what an image installs: the project's dependencies plus some extras, from pyproject.toml.

    python deploy/docker/requirements.py server --also onnx tqdm --onnxruntime cpu > requirements.txt
    pip install -c constraints.txt -r requirements.txt

The Dockerfiles call this, so pyproject.toml stays the one list of dependencies. `--onnxruntime
cpu` swaps `onnxruntime-gpu` for the CPU build of the same version (pinned in constraints.txt):
the CPU images then carry no CUDA libraries. Versions come from `-c constraints.txt` at install.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPU_RUNTIME = "onnxruntime-gpu"


def project_name(requirement: str) -> str:
    """The normalized distribution name of a PEP 508 requirement (`grpcio==1.8` -> `grpcio`)."""
    name = re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(constraints: str) -> dict[str, str]:
    """`name -> version` of every `name==version` line of a constraints file."""
    pins: dict[str, str] = {}
    for raw in constraints.splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[project_name(name)] = version.strip()
    return pins


def requirements(
    pyproject: str,
    constraints: str,
    extras: Sequence[str],
    also: Sequence[str] = (),
    onnxruntime: str = "gpu",
) -> list[str]:
    """The base dependencies, those of `extras` and `also`, each once, in that order."""
    project = tomllib.loads(pyproject)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise ValueError(f"no such extra in pyproject.toml: {', '.join(unknown)}")
    wanted = [*project["dependencies"], *(r for extra in extras for r in optional[extra]), *also]
    chosen: dict[str, str] = {}
    for requirement in wanted:
        name, line = project_name(requirement), requirement
        if onnxruntime == "cpu" and name == GPU_RUNTIME:
            version = pinned_versions(constraints).get(GPU_RUNTIME)
            if version is None:
                raise ValueError(f"constraints.txt pins no {GPU_RUNTIME} version to follow")
            name, line = "onnxruntime", f"onnxruntime=={version}"
        chosen.setdefault(name, line)
    return list(chosen.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="extras of pyproject.toml (server, client, ...)")
    parser.add_argument("--also", nargs="*", default=[], help="more requirements, by name")
    parser.add_argument("--onnxruntime", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: here)")
    args = parser.parse_args(argv)
    try:
        lines = requirements(
            (args.root / "pyproject.toml").read_text(),
            (args.root / "constraints.txt").read_text(),
            args.extras,
            args.also,
            args.onnxruntime,
        )
    except (OSError, ValueError) as exc:
        print(f"requirements: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
