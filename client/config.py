"""Client settings from `SANCODEC_*` environment variables (flags override them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClientConfig"]


@dataclass(frozen=True)
class ClientConfig:
    server: str = "localhost:50051"
    token: str | None = None
    tls_ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout_s: float = 30.0
    round_robin: bool = False  # calls spread over every address the server's name resolves to
    models: Path = Path("models")  # bundles for `encode --adapt`, which codes locally

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ClientConfig:
        def path(name: str) -> Path | None:
            value = environ.get(name)
            return Path(value) if value else None

        return cls(
            server=environ.get("SANCODEC_SERVER") or cls.server,
            token=environ.get("SANCODEC_TOKEN") or None,
            tls_ca=path("SANCODEC_TLS_CA"),
            client_cert=path("SANCODEC_CLIENT_CERT"),
            client_key=path("SANCODEC_CLIENT_KEY"),
            models=path("SANCODEC_MODELS") or cls.models,
            round_robin=environ.get("SANCODEC_ROUND_ROBIN", "").lower() in ("1", "true", "yes"),
        )
