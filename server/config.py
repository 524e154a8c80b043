"""Server settings, read once at the edge from flags or `SANCODEC_*` environment variables."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import grpc

from sancodec.errors import InvalidConfigError

__all__ = ["ServerConfig", "check_config"]

PREFIX = "SANCODEC_"
SECRETS = ("token",)  # environment only: a flag's value shows in /proc/PID/cmdline


@dataclass(frozen=True)
class ServerConfig:
    """Every knob of the server; each field is also `--flag-name` and `SANCODEC_FIELD_NAME`."""

    models: Path = Path("models")
    host: str = "[::]"
    port: int = 50051
    metrics_port: int = 9464  # 0 picks a free port; -1 turns the HTTP exposition off
    metrics_host: str = ""  # where /metrics listens; empty follows `host`
    max_batch: int = 64  # windows per ONNX Runtime call
    max_wait_ms: float = 2.0  # how long a window waits for others to join its batch
    queue_windows: int = 4096  # windows waiting for the encoder; beyond, RESOURCE_EXHAUSTED
    max_streams: int = 2048
    max_streams_per_peer: int = 256  # per client address; behind a proxy, raise it
    max_health_watches: int = 64  # Health.Watch streams, all clients together
    config_timeout_s: float = 5.0  # a stream must send its config this soon
    idle_timeout_s: float = 60.0  # and then a message at least this often
    shed_delay_ms: float = 25.0  # loop lag or queue delay beyond which new streams are refused
    max_inflight_bytes: int = 256 << 20  # working set of chunks being coded, all streams together
    flow_window_bytes: int = 256 << 10  # HTTP/2 window per stream (no BDP growth)
    max_chunk_bytes: int = 4 << 20
    max_message_bytes: int = 8 << 20
    max_stream_seconds: float = 24 * 3600.0  # a stream's recording length, in seconds of signal
    grace_s: float = 10.0
    keepalive_s: float = 30.0
    max_connection_age_s: float = 3600.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: clients must present a certificate it signed (mTLS)
    token: str | None = None  # set: every call but health needs "authorization: Bearer <token>"
    token_file: Path | None = None  # the token, read from this file (never a flag: /proc shows it)
    providers: str = "auto"  # "auto" (CUDA first when present), "cpu" or "cuda"
    threads: int = 0  # ONNX Runtime intra-op threads; 0 lets it choose
    workers: int = 0  # server processes sharing the port (SO_REUSEPORT); 0 is one per core

    def __post_init__(self) -> None:
        checks = {
            "port must be in 0..65535": 0 <= self.port <= 65535,
            "workers must be 0 (one per core) or more": self.workers >= 0,
            "metrics port must be in -1..65535": -1 <= self.metrics_port <= 65535,
            "max batch, queue, streams and sizes must be positive": min(
                self.max_batch,
                self.queue_windows,
                self.max_streams,
                self.max_chunk_bytes,
                self.max_message_bytes,
                self.max_streams_per_peer,
                self.max_health_watches,
                self.max_inflight_bytes,
                self.flow_window_bytes,
            )
            > 0,
            "waits and grace must be non-negative": min(self.max_wait_ms, self.grace_s) >= 0,
            "timeouts and shed delay must be positive": min(
                self.config_timeout_s, self.idle_timeout_s, self.shed_delay_ms
            )
            > 0,
            "the in-flight budget must hold one int16 chunk's working set (12 x max chunk)": (
                self.max_inflight_bytes >= 12 * self.max_chunk_bytes
            ),
            "tls cert and key go together": (self.tls_cert is None) == (self.tls_key is None),
            "mTLS needs tls cert and key": self.tls_client_ca is None or self.tls_cert is not None,
            "providers must be auto, cpu or cuda": self.providers in ("auto", "cpu", "cuda"),
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise InvalidConfigError("; ".join(failed))

    @property
    def metrics_address(self) -> str:
        """The host /metrics binds: `metrics_host`, else `host` (IPv6 without its brackets;
        empty is every interface, as for gRPC)."""
        return (self.metrics_host or self.host).strip("[]") or "::"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServerConfig:
        """Settings from `SANCODEC_*` variables; the rest keep their defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, cls)
        return _with_token(cls(**values))

    @classmethod
    def from_args(cls, argv: Sequence[str], environ: Mapping[str, str]) -> ServerConfig:
        """Flags override the environment, which overrides the defaults."""
        base = cls.from_env(environ)
        parser = argparse.ArgumentParser(
            prog="sancodec-server", description="The sancodec gRPC codec server."
        )
        for f in fields(cls):
            if f.name in SECRETS:
                continue
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                                help=f"default {getattr(base, f.name)!s} (env {PREFIX}{f.name.upper()})")  # fmt: skip
        parser.add_argument("--token", dest="_token_flag", help=argparse.SUPPRESS)
        args = parser.parse_args(list(argv))
        if args._token_flag is not None:
            raise InvalidConfigError(
                "--token would show the token in the process list; "
                f"use --token-file PATH or {PREFIX}TOKEN"
            )
        del args._token_flag
        values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(cls)}
        for name, raw in vars(args).items():
            if raw is not None:
                values[name] = _parse(name, raw, cls)
        return _with_token(cls(**values))


def _with_token(config: ServerConfig) -> ServerConfig:
    """Read the token file, once, at the edge; a token file wins over the environment's token."""
    if config.token_file is None:
        return config
    try:
        token = config.token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"cannot read the token file {config.token_file}: {exc}") from None
    if not token:
        raise InvalidConfigError(f"the token file {config.token_file} is empty")
    return replace(config, token=token)


def _parse(name: str, raw: str, cls: type[ServerConfig]) -> object:
    default = next(f for f in fields(cls) if f.name == name).default
    try:
        if name in ("models", "tls_cert", "tls_key", "tls_client_ca", "token_file"):
            return Path(raw)
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return raw
    except ValueError:
        raise InvalidConfigError(
            f"{name}: {raw!r} is not a valid {type(default).__name__}"
        ) from None


def _read_tls(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidConfigError(f"cannot read TLS file {path}: {exc.strerror}") from None


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials (None for plaintext), read before anything starts."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    ca = _read_tls(config.tls_client_ca) if config.tls_client_ca else None
    pair = (_read_tls(config.tls_key), _read_tls(config.tls_cert))
    return grpc.ssl_server_credentials(
        [pair], root_certificates=ca, require_client_auth=ca is not None
    )


def check_config(config: ServerConfig) -> grpc.ServerCredentials | None:
    """What can be checked before any server starts (the model repository, the TLS files);
    returns the TLS credentials (None for plaintext)."""
    if not config.models.is_dir():
        raise InvalidConfigError(f"model repository {config.models} is not a directory")
    return _credentials(config)
