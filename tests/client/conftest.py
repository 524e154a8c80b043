"""What the `sancodec` CLI tests share: a real server on loopback, and a way to run the CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_runner import CliRun
from server_harness import BASE, RunningServer

from client.cli import main


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """A server with the shipped models, one per test module."""
    server = RunningServer(BASE)
    yield server.address
    server.stop()


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """run(*args): the CLI's exit code, stdout and stderr."""

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return cli
