"""Throwaway TLS material made with the `openssl` command line: a CA, a server certificate for
127.0.0.1 and localhost, and a client certificate, all signed by that CA."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Certs", "have_openssl", "make_certs"]

KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA certificate (PEM): the root clients and servers trust
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _leaf(directory: Path, name: str, subject: str, extensions: str, serial: int) -> None:
    """A key and a certificate `<name>.key`, `<name>.pem` signed by ca.key, with `extensions`."""
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", *KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-set_serial", str(serial), "-days", "2", "-sha256",
             "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


def make_certs(directory: Path) -> Certs:
    """Write ca.pem, server.{pem,key} (SAN IP:127.0.0.1, DNS:localhost) and client.{pem,key}."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-new", *KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-sha256", "-subj", "/CN=sancodec test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)  # fmt: skip
    _leaf(
        directory,
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n",
        serial=2,
    )
    _leaf(
        directory,
        "client",
        "/CN=sancodec test client",
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
        serial=3,
    )
    return Certs(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
