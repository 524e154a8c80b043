"""`make demo`: the server with the shipped models, a real recording streamed, stored, decoded.

Starts `sancodec-server` on free ports, streams data/demo (MIT-BIH 100, 2 minutes) through it at
20x real time with `sancodec stream`, stores the .sanc, inspects it, decodes it offline and through
the server, compares, plots, shows the server's metrics, and stops the server with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "demo"
RECORD = ROOT / "data" / "demo" / "mitdb100_excerpt.hea"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sancodec(*args: str) -> str:
    """Run the real CLI, echoing the command and what it prints."""
    command = [sys.executable, "-m", "client", *args]
    print(f"\n$ sancodec {' '.join(args)}", flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    print(done.stdout.rstrip(), flush=True)
    if done.returncode != 0:
        raise SystemExit(
            f"demo: `sancodec {args[0]}` failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def wait_serving(address: str, server: subprocess.Popen[str], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"demo: the server exited early ({server.returncode})")
        probe = subprocess.run([sys.executable, "-m", "client", "health", "--server", address, "--timeout", "2"],
                               cwd=ROOT, capture_output=True, text=True, check=False)  # fmt: skip
        if probe.returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit("demo: the server did not become ready")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    log = (OUT / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--models", "models", "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", str(metrics_port), "--grace-s", "5"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        print(
            f"server: {address}, metrics http://127.0.0.1:{metrics_port}/metrics, log {OUT / 'server.log'}"
        )
        wait_serving(address, server)
        sancodec("models", "--server", address)
        sanc, rec = OUT / "mitdb100.sanc", str(RECORD)
        sancodec("stream", rec, "--server", address, "--speed", "20", "-o", str(sanc))
        sancodec("inspect", str(sanc))
        sancodec("decode", str(sanc), "-o", str(OUT / "decoded_offline.npy"))
        sancodec(
            "decode",
            str(sanc),
            "--server",
            address,
            "-o",
            str(OUT / "decoded_server.npy"),
        )
        sancodec("compare", rec, str(OUT / "decoded_offline.npy"), "--sample-rate-hz", "360")
        sancodec(
            "compare",
            str(OUT / "decoded_offline.npy"),
            str(OUT / "decoded_server.npy"),
            "--sample-rate-hz",
            "360",
        )
        # the same recording with kernels fitted to it (local, least squares): compare its PRDN above
        sancodec(
            "encode", rec, "--adapt", "--models", "models", "-o", str(OUT / "mitdb100_adapted.sanc")
        )
        sancodec(
            "plot",
            str(sanc),
            "--original",
            rec,
            "-o",
            str(OUT / "mitdb100.png"),
            "--start",
            "30",
            "--duration",
            "8",
        )
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        print("\nserver metrics (a few lines):")
        for line in metrics.splitlines():
            if line.startswith(("sancodec_blocks_total", "sancodec_samples_total", "sancodec_encoded_bytes_total",
                                "sancodec_model_loaded", "sancodec_block_prdn_percent_count", "sancodec_ready")):  # fmt: skip
                print("  " + line)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
        log.close()
        print(f"\nserver stopped with exit code {code} after SIGTERM")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
