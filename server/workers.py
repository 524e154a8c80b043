"""`--workers N`: N server processes share one port, one /metrics and one drain.

Each worker is a whole server (`server.app.serve`) in its own process, so codec work runs on N
cores. They listen on one address with SO_REUSEPORT, which gRPC sets on Linux (`grpc.so_reuseport`
defaults to 1), and the kernel spreads connections among them. Their metrics go to files in a
shared directory (prometheus_client's multiprocess mode), which this parent serves as one /metrics.
SIGTERM or SIGINT to the parent is passed to every worker, each drains as one server does, and the
parent exits 0 once all of them have. A worker that dies while the others serve is started again;
a worker whose parent dies drains and exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import socket
import tempfile
import threading
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sancodec.errors import InvalidConfigError
from server.config import ServerConfig

__all__ = ["available_cores", "serve_workers"]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
START_TIMEOUT_S = 120.0  # loading and warming the models, per worker
EXIT_MARGIN_S = 10.0  # beyond the grace period, before a worker that does not exit is killed
ORPHAN_CHECK_S = 0.5  # how often a worker checks that its parent is still there


def available_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity (a container's cpuset), and no more than
    its cgroup's CPU quota (a container's CPU limit) in whole cores, at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = cpu_max.read_text().split()
        if quota != "max":
            return max(1, min(cores or 1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota here
    return cores or 1


def _worker(config: ServerConfig, ready: Any, errors: Any) -> None:
    """One worker process: a whole server on the shared port, with its metrics in the shared
    directory (the environment says which, before prometheus_client is first imported here).
    Sets `ready` once serving; puts why it could not start on `errors`."""
    import asyncio
    import sys

    from sancodec.errors import SancodecError
    from server.app import serve

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    threading.Thread(target=_drain_when_orphaned, args=(os.getppid(),), daemon=True).start()
    try:
        asyncio.run(serve(config, ready=ready.set, shared_port=True))
    except SancodecError as exc:
        errors.put(str(exc))
        sys.exit(2)


def _drain_when_orphaned(parent: int) -> None:
    """A worker whose parent is gone (killed with SIGKILL, say) drains and exits, rather than
    go on serving the shared port beside whatever starts there next."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_S)
    log.warning("the parent process %d is gone; draining", parent)
    os.kill(os.getpid(), signal.SIGTERM)


def _reserve(config: ServerConfig) -> tuple[socket.socket, int]:
    """Bind (without listening) the port the workers will share, so that port 0 becomes one free
    port for all of them; gRPC binds it again in each worker with SO_REUSEPORT. The port is first
    bound alone: a port some other server holds, even with SO_REUSEPORT, is refused."""
    host = config.host.strip("[]") or "::"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as alone:
            alone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT only
            alone.bind((host, config.port))
            port = int(alone.getsockname()[1])
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise InvalidConfigError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
    return sock, port


class _Workers:
    def __init__(self, config: ServerConfig, count: int) -> None:
        self.config, self.count = config, count
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.stopping = threading.Event()
        self.errors = self.context.Queue()

    def start(self, index: int) -> tuple[BaseProcess, Any]:
        ready = self.context.Event()
        process = self.context.Process(
            target=_worker, args=(self.config, ready, self.errors), name=f"worker-{index}"
        )
        process.start()
        return process, ready

    def start_all(self) -> None:
        started = [self.start(i) for i in range(self.count)]
        self.processes = [p for p, _ in started]
        deadline = time.monotonic() + START_TIMEOUT_S
        for process, ready in started:
            while not ready.wait(0.1):
                if process.exitcode is not None or time.monotonic() > deadline:
                    self.signal(signal.SIGTERM)
                    self.join(EXIT_MARGIN_S)
                    try:
                        why = self.errors.get(timeout=1.0)
                    except queue.Empty:
                        why = f"{process.name} did not start (exit code {process.exitcode})"
                    raise InvalidConfigError(why)

    def signal(self, signum: int) -> None:
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signum)

    def watch(self, metrics_dir: str) -> None:
        """Until told to stop: start again any worker that died."""
        from prometheus_client import multiprocess

        while not self.stopping.wait(0.5):
            for i, process in enumerate(self.processes):
                if process.exitcode is None or self.stopping.is_set():
                    continue
                log.error("%s exited with %s; starting it again", process.name, process.exitcode)
                assert process.pid is not None
                multiprocess.mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]
                self.processes[i], _ = self.start(i)

    def join(self, timeout_s: float) -> bool:
        """Wait for every worker; kill those still running after `timeout_s`. True if all
        exited with 0."""
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("%s did not exit within the grace period; killing it", process.name)
                process.kill()
                process.join()
        return all(p.exitcode == 0 for p in self.processes)


def serve_workers(config: ServerConfig, count: int) -> int:
    """Run `count` workers on `config.port` until SIGTERM or SIGINT; then drain them all. The
    exit code is 0 when every worker drained and exited cleanly."""
    from server.telemetry import serve_metrics, workers_registry

    reservation, port = _reserve(config)
    with reservation, tempfile.TemporaryDirectory(prefix="sancodec-metrics-") as metrics_dir:
        os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by every worker it spawns
        workers = _Workers(replace(config, port=port, metrics_port=-1, workers=1), count)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        workers.start_all()
        http = None
        if config.metrics_port >= 0:
            http, _ = serve_metrics(
                workers_registry(metrics_dir), config.metrics_port, config.metrics_address
            )
        log.info("listening on %s:%d with %d workers", config.host, port, count)
        watcher = threading.Thread(target=workers.watch, args=(metrics_dir,), daemon=True)
        watcher.start()
        while not stop.wait(0.5):
            pass
        workers.stopping.set()
        watcher.join()
        log.info("draining %d workers (grace %.1f s)", count, config.grace_s)
        workers.signal(signal.SIGTERM)
        clean = workers.join(config.grace_s + EXIT_MARGIN_S)
        if http is not None:
            http.shutdown()
            http.server_close()
        log.info("stopped" if clean else "stopped; a worker did not exit cleanly")
        return 0 if clean else 1
