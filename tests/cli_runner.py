"""The type of the `run` fixture of tests/client/conftest.py: run(*args) -> (exit code, out, err)."""

from __future__ import annotations

from collections.abc import Callable

CliRun = Callable[..., tuple[int, str, str]]
