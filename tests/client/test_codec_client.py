"""CodecClient against a real server on loopback, with real recordings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import wfdb
from server_harness import BASE, RunningServer

from client.codec import CodecClient, EncodeEvent
from sancodec import decode, metrics
from sancodec.errors import InvalidInputError, NotFoundError, UnavailableError


@pytest.fixture(scope="module")
def client() -> Iterator[CodecClient]:
    server = RunningServer(BASE)
    with CodecClient(server.address, timeout_s=10) as c:
        yield c
    server.stop()


@pytest.fixture(scope="module")
def ecg(shared_data: Path) -> np.ndarray:
    return wfdb.rdrecord(str(shared_data / "wfdb" / "mitdb" / "100"), sampto=9000).p_signal.T.copy()


def test_models_and_health(client: CodecClient) -> None:
    assert client.health() == "SERVING"
    names = {m.name for m in client.models()}
    assert names == {"ecg", "ecg-lowrate", "ecg-rhythm", "eeg"}
    ecg = client.model("ecg")
    assert ecg.kernel_sizes == (256,)
    assert ecg.residual.startswith("bior4.4")
    assert (ecg.units, client.model("eeg").units) == ("mV", "uV")
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        client.model("nope")


def test_encode_then_decode_on_the_server_matches_offline(
    client: CodecClient, ecg: np.ndarray
) -> None:
    result = client.encode(ecg, sample_rate_hz=360.0, chunk=1000, metadata={"record": "100"})
    header = result.header
    assert header.channel_count == 2
    assert header.metadata["record"] == "100"
    assert result.summary is not None
    assert result.summary.sample_count == 9000
    offline = header.to_physical(decode(result.blocks, header.codebook, 2))
    served = client.decode(result.blocks, header)
    assert np.allclose(served, offline, atol=1e-5)
    assert metrics.prdn(ecg[0], offline[0]) < 25
    assert len(result.qualities) == len(result.blocks)


def test_events_stream_as_they_come(client: CodecClient, ecg: np.ndarray) -> None:
    chunks = (ecg[:, lo : lo + 500] for lo in range(0, 6000, 500))
    events = list(client.encode_events(chunks, sample_rate_hz=360.0, channel_count=2))
    assert type(events[0]).__name__ == "StreamHeader"
    assert any(isinstance(e, EncodeEvent) and e.block is not None for e in events)


def test_errors_come_back_as_sancodec_errors(client: CodecClient, ecg: np.ndarray) -> None:
    with pytest.raises(InvalidInputError, match="360 Hz"):
        client.encode(ecg, sample_rate_hz=250.0)
    with pytest.raises(NotFoundError):
        client.encode(ecg, sample_rate_hz=360.0, model="nope")


def test_no_server_is_a_clear_unavailable_error() -> None:
    with CodecClient("127.0.0.1:1", timeout_s=1) as nobody:
        with pytest.raises(UnavailableError, match=r"127\.0\.0\.1:1"):
            nobody.models()
        with pytest.raises(UnavailableError, match="no sancodec server answers"):
            nobody.encode(np.zeros((1, 10)), sample_rate_hz=360.0)


def test_mtls_and_token(tmp_path: Path, ecg: np.ndarray) -> None:
    from server_certs import have_openssl, make_certs
    from server_harness import start

    from sancodec.errors import AuthenticationError

    if not have_openssl():
        pytest.skip("openssl is needed to make test certificates")
    certs = make_certs(tmp_path / "certs")
    server = start(
        tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca, token="t0k"
    )
    address = f"localhost:{server.runtime.port}"
    try:
        with CodecClient(
            address,
            tls_ca=certs.ca,
            client_cert=certs.client_cert,
            client_key=certs.client_key,
            token="t0k",
        ) as good:
            assert good.health() == "SERVING"
            assert good.encode(ecg[:, :3000], sample_rate_hz=360.0).summary is not None
        with (
            CodecClient(
                address, tls_ca=certs.ca, client_cert=certs.client_cert, client_key=certs.client_key
            ) as tokenless,
            pytest.raises(AuthenticationError, match="bearer token"),
        ):
            tokenless.models()
        certless = CodecClient(address, tls_ca=certs.ca, token="t0k", timeout_s=2)
        with certless, pytest.raises(UnavailableError):
            certless.models()
    finally:
        server.stop()
