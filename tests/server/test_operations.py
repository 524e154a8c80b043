"""Operating the server: bearer tokens, TLS and mTLS, broken and hostile model repositories,
SIGTERM draining on the real `python -m server` entry point, and configuration at the edge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_certs import Certs, have_openssl, make_certs
from server_harness import REPO, RunningServer, encode_requests, free_port, start

from sancodec.errors import InvalidConfigError
from sancodec.v1 import codec_pb2, codec_pb2_grpc, codes_pb2
from server.config import ServerConfig

MODELS = REPO / "models"
UNAVAILABLE, UNAUTHENTICATED = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED
LIST = codec_pb2.ListModelsRequest()


def _names(channel: grpc.Channel, **call: object) -> set[str]:
    reply = codec_pb2_grpc.CodecServiceStub(channel).ListModels(LIST, timeout=5, **call)
    return {m.ref.name for m in reply.models}


def _code(call: object) -> grpc.StatusCode:
    """The status code an RPC (a zero-argument callable) fails with; fails the test if it works."""
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code()  # type: ignore[no-any-return]


def _health(channel: grpc.Channel, timeout: float = 5) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout).status  # type: ignore[no-any-return]


def _blocks(responses: list[codec_pb2.EncodeResponse]) -> list[codes_pb2.EncodedBlock]:
    return [r.block for r in responses if r.WhichOneof("payload") == "block"]


@pytest.fixture
def ecg_mv(mitdb100: np.ndarray) -> np.ndarray:
    """MIT-BIH 100 MLII, 10000 samples in mV (200 ADC units per mV), as one channel: (1, n)."""
    return (mitdb100[:10000] / 200.0)[None, :]


# --- bearer token -------------------------------------------------------------------------


def test_token_auth_guards_every_call_but_health(
    running: list[RunningServer], ecg_mv: np.ndarray
) -> None:
    server = start(token="s3cret")
    running.append(server)
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListModels(LIST, timeout=5)
        assert caught.value.code() == UNAUTHENTICATED
        assert "bearer token" in caught.value.details()
        for wrong in ("Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "s3cret", "Basic s3cret"):
            metadata = (("authorization", wrong),)
            assert _code(lambda m=metadata: stub.ListModels(LIST, timeout=5, metadata=m)) == (
                UNAUTHENTICATED
            ), wrong
        right = (("authorization", "Bearer s3cret"),)
        assert _names(channel, metadata=right) == {"ecg", "ecg-lowrate", "ecg-rhythm", "eeg"}
        model = stub.GetModel(codec_pb2.GetModelRequest(name="ecg"), timeout=5, metadata=right)
        assert model.model.ref.name == "ecg"
        assert _code(lambda: stub.GetModel(codec_pb2.GetModelRequest(name="ecg"), timeout=5)) == (
            UNAUTHENTICATED
        )
        # a stream is refused before it sees a message; with the token it codes
        signal_ = ecg_mv[:, :4096]
        assert _code(lambda: list(stub.Encode(encode_requests(signal_, 1024), timeout=5))) == (
            UNAUTHENTICATED
        )
        responses = list(stub.Encode(encode_requests(signal_, 1024), timeout=10, metadata=right))
        assert responses[-1].summary.sample_count == 4096
        assert len(_blocks(responses)) == 1  # one 4096-sample block
        # health needs no token: load balancers probe without one
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


# --- TLS and mTLS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if not have_openssl():
        pytest.skip("the openssl command line is not installed")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A second, unrelated CA and its certificates: trusted by nobody here."""
    if not have_openssl():
        pytest.skip("the openssl command line is not installed")
    return make_certs(tmp_path_factory.mktemp("other-certs"))


def _tls_channel(
    port: int, ca: Path, client: tuple[Path, Path] | None = None, host: str = "localhost"
) -> grpc.Channel:
    key, chain = (client[0].read_bytes(), client[1].read_bytes()) if client else (None, None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(), private_key=key, certificate_chain=chain
    )
    return grpc.secure_channel(f"{host}:{port}", credentials)


def test_tls_serves_verified_clients_and_refuses_plaintext(
    running: list[RunningServer], certs: Certs, other_certs: Certs
) -> None:
    server = start(tls_cert=certs.server_cert, tls_key=certs.server_key)
    running.append(server)
    port = server.runtime.port
    for host in ("localhost", "127.0.0.1"):  # the certificate names both
        with _tls_channel(port, certs.ca, host=host) as channel:
            assert _names(channel) == {"ecg", "ecg-lowrate", "ecg-rhythm", "eeg"}
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
        stub = codec_pb2_grpc.CodecServiceStub(plain)
        assert _code(lambda: stub.ListModels(LIST, timeout=2)) == UNAVAILABLE
    with _tls_channel(port, other_certs.ca) as untrusting:  # the client checks the server
        stub = codec_pb2_grpc.CodecServiceStub(untrusting)
        assert _code(lambda: stub.ListModels(LIST, timeout=2)) == UNAVAILABLE


def test_mtls_needs_a_client_certificate_from_the_ca(
    running: list[RunningServer], certs: Certs, other_certs: Certs
) -> None:
    server = start(tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca)
    running.append(server)
    port = server.runtime.port
    with _tls_channel(port, certs.ca, (certs.client_key, certs.client_cert)) as channel:
        assert _names(channel) == {"ecg", "ecg-lowrate", "ecg-rhythm", "eeg"}
    for client in (None, (other_certs.client_key, other_certs.client_cert)):
        with _tls_channel(port, certs.ca, client) as channel:
            stub = codec_pb2_grpc.CodecServiceStub(channel)
            assert _code(lambda s=stub: s.ListModels(LIST, timeout=2)) == UNAVAILABLE, client


def test_tls_flags_must_come_in_pairs(certs: Certs) -> None:
    with pytest.raises(InvalidConfigError, match="tls cert and key go together"):
        ServerConfig(tls_cert=certs.server_cert)
    with pytest.raises(InvalidConfigError, match="mTLS needs tls cert and key"):
        ServerConfig(tls_client_ca=certs.ca)


# --- the model repository -----------------------------------------------------------------


def _bundle(source: Path, target: Path, name: str | None = None) -> Path:
    """A copy of the bundle at `source` in `target`, its manifest renamed to `name`."""
    shutil.copytree(source, target)
    if name is not None:
        manifest = target / "model.json"
        data = json.loads(manifest.read_text())
        data["name"] = name
        manifest.write_text(json.dumps(data))
    return target


def test_a_broken_bundle_is_skipped_beside_good_ones(
    running: list[RunningServer], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _bundle(MODELS / "ecg" / "1", models / "ecg" / "1")
    _bundle(MODELS / "eeg" / "1", models / "eeg" / "1")
    bad = _bundle(MODELS / "ecg" / "1", models / "bad" / "1", name="bad")
    encoder = bytearray((bad / "encoder.onnx").read_bytes())
    encoder[len(encoder) // 2] ^= 0x01
    (bad / "encoder.onnx").write_bytes(bytes(encoder))
    server = start(models=models)
    running.append(server)
    with grpc.insecure_channel(server.address) as channel:
        assert _names(channel) == {"ecg", "eeg"}
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        assert _code(lambda: stub.GetModel(codec_pb2.GetModelRequest(name="bad"), timeout=5)) == (
            grpc.StatusCode.NOT_FOUND
        )
    errors = server.runtime.repository.errors
    assert len(errors) == 1, errors
    assert "bad/1" in errors[0]
    assert "sha256" in errors[0]


def _serve(running: list[RunningServer], models: Path) -> tuple[set[str], list[str]]:
    """A server on this repository: the model names it serves, and the bundles it skipped."""
    server = start(models=models)
    running.append(server)
    with grpc.insecure_channel(server.address) as channel:
        names = _names(channel)
    return names, list(server.runtime.repository.errors)


def test_a_bundle_renamed_without_its_manifest_is_skipped(
    running: list[RunningServer], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _bundle(MODELS / "eeg" / "1", models / "eeg" / "1")
    _bundle(MODELS / "ecg" / "1", models / "impostor" / "1")  # model.json still says ecg/1
    names, (error,) = _serve(running, models)
    assert names == {"eeg"}
    assert "impostor/1" in error
    assert "ecg/1" in error


def test_no_loadable_bundle_is_a_config_error_naming_the_directory(tmp_path: Path) -> None:
    models = tmp_path / "models"
    bad = _bundle(MODELS / "ecg" / "1", models / "bad" / "1", name="bad")
    (bad / "encoder.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(InvalidConfigError) as caught:
        start(models=models)
    assert str(models) in str(caught.value)
    assert "sha256" in str(caught.value)  # the reason of each skipped bundle comes along
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidConfigError, match="it is empty") as caught:
        start(models=empty)
    assert str(empty) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("../ecg", ""),
        ("ecg", "../../etc"),
        ("..", ""),
        (".", "1"),
        ("ecg/../ecg", ""),
        ("ecg", "1/../1"),
        ("/etc/passwd", ""),
        ("ecg", "/etc"),
        ("%2e%2e/ecg", ""),
        ("ecg\n", ""),
        ("ecg", "1\x00"),
        ("ECG", ""),
        ("", ""),
    ],
)
def test_get_model_with_a_path_in_its_name_is_not_found(
    server: RunningServer, name: str, version: str
) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        request = codec_pb2.GetModelRequest(name=name, version=version)
        assert _code(lambda: stub.GetModel(request, timeout=5)) == grpc.StatusCode.NOT_FOUND
        assert _names(channel) == {
            "ecg",
            "ecg-lowrate",
            "ecg-rhythm",
            "eeg",
        }  # and it still answers


def test_an_encode_stream_naming_a_path_is_refused(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        for model, version in (("../models/ecg", ""), ("ecg", "../1")):
            requests = encode_requests(np.zeros((1, 16)), 16, model=model, model_version=version)
            assert _code(lambda r=requests: list(stub.Encode(r, timeout=5))) == (
                grpc.StatusCode.NOT_FOUND
            )


def test_a_symlink_out_of_the_repository_is_skipped(
    running: list[RunningServer], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _bundle(MODELS / "ecg" / "1", models / "ecg" / "1")
    # a valid evil/1 bundle, but outside the repository: only the symlink check refuses it
    outside = _bundle(MODELS / "ecg" / "1", tmp_path / "elsewhere" / "1", name="evil")
    (models / "evil").mkdir()
    (models / "evil" / "1").symlink_to(outside, target_is_directory=True)
    names, (error,) = _serve(running, models)
    assert names == {"ecg"}
    assert "evil/1" in error
    assert "outside" in error


def test_a_name_with_a_trailing_newline_is_not_a_valid_bundle(
    running: list[RunningServer], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    _bundle(MODELS / "eeg" / "1", models / "eeg" / "1")
    _bundle(MODELS / "ecg" / "1", models / "ecg\n" / "1", name="ecg\n")
    names, errors = _serve(running, models)
    assert names == {"eeg"}
    assert len(errors) == 1, errors


# --- SIGTERM on the real entry point ------------------------------------------------------


def _wait_serving(process: subprocess.Popen[bytes], address: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as channel:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the server exited early:\n{log.read_text()}"
            try:
                if _health(channel, timeout=0.5) == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    pytest.fail(f"the server never reported SERVING:\n{log.read_text()}")


def _not_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            return _health(channel, timeout=0.5) != health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return True


class SlowEncode:
    """An Encode stream in a thread: its config, then one chunk every `pause_s` once started."""

    def __init__(self, address: str, signal_: np.ndarray, chunk: int, pause_s: float) -> None:
        self.address, self.signal, self.chunk, self.pause_s = address, signal_, chunk, pause_s
        self.started, self.sent_all = threading.Event(), threading.Event()
        self.responses: list[codec_pb2.EncodeResponse] = []
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _requests(self) -> Iterator[codec_pb2.EncodeRequest]:
        requests = encode_requests(self.signal, self.chunk)
        yield next(requests)  # the config
        if not self.started.wait(10):
            return
        for request in requests:
            time.sleep(self.pause_s)
            yield request
        self.sent_all.set()

    def _run(self) -> None:
        try:
            with grpc.insecure_channel(self.address) as channel:
                stub = codec_pb2_grpc.CodecServiceStub(channel)
                for response in stub.Encode(self._requests(), timeout=30):
                    self.responses.append(response)
                    if response.WhichOneof("payload") == "started":
                        self.started.set()
        except grpc.RpcError as exc:
            self.error = exc

    def result(self, timeout: float) -> list[codec_pb2.EncodeResponse]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream is still running"
        assert self.error is None, self.error
        return self.responses


def test_sigterm_drains_in_flight_streams_and_refuses_new_ones(
    tmp_path: Path, ecg_mv: np.ndarray
) -> None:
    port, grace_s = free_port(), 5.0
    address = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "server", "--models", str(MODELS), "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", "-1", "--grace-s", str(grace_s)]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(REPO)}
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        _wait_serving(process, address, log)
        stream = SlowEncode(address, ecg_mv, 1000, pause_s=0.2)  # 10 chunks: about 2 s
        assert stream.started.wait(10), stream.error
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while not _not_serving(address):  # health turns NOT_SERVING as the drain begins
            assert time.monotonic() < signalled + 5, "health still SERVING after SIGTERM"
            time.sleep(0.05)
        assert not stream.sent_all.is_set(), "the stream ended before the drain began"
        # a new stream is refused, by the service while it drains or by the closed port
        with grpc.insecure_channel(address) as channel:
            late = codec_pb2_grpc.CodecServiceStub(channel).Encode(
                encode_requests(ecg_mv[:, :2048], 2048), timeout=3
            )
            assert _code(lambda: list(late)) == UNAVAILABLE
        responses = stream.result(20)
        assert responses[-1].WhichOneof("payload") == "summary"
        summary = responses[-1].summary
        assert summary.sample_count == ecg_mv.shape[1] == 10000
        assert summary.block_count == len(_blocks(responses)) == 3  # ceil(10000 / 4096)
        assert process.wait(grace_s + 5) == 0
        assert time.monotonic() - signalled < grace_s + 5
        text = log.read_text()
        assert "draining" in text
        assert "Traceback" not in text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# --- configuration ------------------------------------------------------------------------


def test_config_from_the_environment() -> None:
    config = ServerConfig.from_env(
        {
            "SANCODEC_PORT": "6000",
            "SANCODEC_MODELS": "/x",
            "SANCODEC_MAX_BATCH": "8",
            "SANCODEC_GRACE_S": "2.5",
            "SANCODEC_TOKEN": "t",
            "SANCODEC_TLS_CERT": "",
            "OTHER_PORT": "1",
        }
    )
    assert (config.port, config.models, config.max_batch) == (6000, Path("/x"), 8)
    assert (config.grace_s, config.token, config.tls_cert) == (2.5, "t", None)
    assert ServerConfig.from_env({}) == ServerConfig()
    with pytest.raises(InvalidConfigError, match="port"):
        ServerConfig.from_env({"SANCODEC_PORT": "abc"})
    with pytest.raises(InvalidConfigError, match="port must be in"):
        ServerConfig.from_env({"SANCODEC_PORT": "70000"})
    with pytest.raises(InvalidConfigError, match="grace_s"):
        ServerConfig.from_env({"SANCODEC_GRACE_S": "soon"})


def test_flags_win_over_the_environment() -> None:
    env = {"SANCODEC_PORT": "6000", "SANCODEC_MAX_BATCH": "8"}
    config = ServerConfig.from_args(["--port", "7000", "--metrics-port", "-1"], env)
    assert (config.port, config.max_batch, config.metrics_port) == (7000, 8, -1)
    assert ServerConfig.from_args([], env).port == 6000
    with pytest.raises(InvalidConfigError, match="port"):
        ServerConfig.from_args(["--port", "x"], env)


def _run_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_flag_value_exits_2_with_one_line() -> None:
    done = _run_server("--models", "/nonexistent", "--port", "abc", "--metrics-port", "-1")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "port" in lines[0]
    assert "'abc'" in lines[0]


def test_a_missing_model_directory_exits_2_with_one_line() -> None:
    done = _run_server("--models", "/nonexistent", "--port", "0", "--metrics-port", "-1")
    assert done.returncode == 2
    assert "/nonexistent" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_missing_tls_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    done = _run_server("--models", str(MODELS), "--host", "127.0.0.1", "--port", "0",
                       "--metrics-port", "-1", "--tls-cert", str(missing),
                       "--tls-key", str(missing))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(missing) in done.stderr


def test_importing_the_server_does_not_import_torch() -> None:
    code = (
        "import sys, server.app, server.__main__; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'training')]; "
        "assert not bad, bad"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
