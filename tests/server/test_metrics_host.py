"""/metrics listens where the server was told to, and nowhere wider."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from server_harness import REPO

from server.config import ServerConfig

LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


def _listeners(port: int) -> set[str]:
    """Local addresses (hex, as the kernel writes them) of TCP sockets listening on `port`."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == LISTEN and int(hex_port, 16) == port:
                found.add(address)
    return found


def _metrics_port(log: Path, process: subprocess.Popen[bytes]) -> tuple[str, int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"metrics on http://(\S+):(\d+)/metrics", log.read_text())
        if match:
            return match.group(1), int(match.group(2))
        assert process.poll() is None, f"the server exited early:\n{log.read_text()}"
        time.sleep(0.1)
    pytest.fail(f"the server never logged its metrics address:\n{log.read_text()}")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_metrics_follow_host_and_bind_loopback_only(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "server", "--models", str(REPO / "models"),
               "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0"]  # fmt: skip
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        host, port = _metrics_port(log, process)
        assert host == "127.0.0.1"
        assert _listeners(port) == {"0100007F"}  # 127.0.0.1, and not 0.0.0.0 or ::
        assert "0.0.0.0" not in log.read_text()
    finally:
        process.kill()
        process.wait(10)


def test_the_metrics_host_defaults_to_the_grpc_host() -> None:
    assert ServerConfig(host="127.0.0.1").metrics_address == "127.0.0.1"
    assert ServerConfig(host="[::1]").metrics_address == "::1"
    assert ServerConfig().metrics_address == "::"  # "[::]": every interface, as gRPC
    assert ServerConfig(host="127.0.0.1", metrics_host="0.0.0.0").metrics_address == "0.0.0.0"
    flags = ["--host", "10.0.0.5", "--metrics-host", "127.0.0.1"]
    assert ServerConfig.from_args(flags, {}).metrics_address == "127.0.0.1"
    assert ServerConfig.from_env({"SANCODEC_METRICS_HOST": "::1"}).metrics_address == "::1"
