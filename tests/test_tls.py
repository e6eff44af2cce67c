"""TLS end to end: services over TLS and mutual TLS, Redis over TLS, with certificates the test
generates; a client without the right CA (or without a certificate, under mTLS) is refused."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
import time
import urllib.error
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cryptorec.services import versions
from cryptorec.services.app.server import start
from cryptorec.services.client.library import CryptoRecClient
from cryptorec.services.rpc.health import SERVING, status
from cryptorec.services.rpc.tls import ClientTls, ServerTls
from cryptorec.services.store.base import StoreError
from cryptorec.services.store.file_store import FileStore
from cryptorec.services.store.redis_store import RedisStore
from tests.redis_server import free_port, redis_command
from tests.test_service_e2e import ITEMS, RATINGS, _library_prediction, _packed
from tests.web_front import grpc_web_call

pytestmark = [pytest.mark.integration, pytest.mark.he]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(
    path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> tuple[Path, Path]:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path.with_suffix(".crt"), path.with_suffix(".key")


def _ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crt, _ = _write(directory / name, key, cert)
    return crt, key, cert


def _leaf(
    directory: Path, name: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _write(directory / name, key, cert)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = _ca(d, "ca")
    other, _, _ = _ca(d, "other-ca")
    server_crt, server_key = _leaf(d, "server", ca_key, ca_cert)
    client_crt, client_key = _leaf(d, "client", ca_key, ca_cert)
    return {
        "ca": ca,
        "other": other,
        "server_crt": server_crt,
        "server_key": server_key,
        "client_crt": client_crt,
        "client_key": client_key,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FileStore:
    s = FileStore(tmp_path_factory.mktemp("store"))
    versions.publish(s, "v1", _packed(), [(i + 1, f"Item {i + 1}") for i in range(ITEMS)])
    return s


def _refused(client: CryptoRecClient) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        client.model_info()
    return info.value.code()


def test_tls_end_to_end_and_a_client_without_the_right_ca_is_refused(pki, store) -> None:  # type: ignore[no-untyped-def]
    running = start(
        ("key", "model", "evaluator"),
        store,
        tls=ServerTls(pki["server_crt"], pki["server_key"]),
        health_port=0,
    )
    target = f"127.0.0.1:{running.port}"
    try:
        client = CryptoRecClient(target, tls=ClientTls(pki["ca"]), timeout=20)
        predictions, _ = client.predict(RATINGS)
        np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
        client.close()
        for wrong in (
            CryptoRecClient(target, tls=ClientTls(pki["other"]), timeout=5),
            CryptoRecClient(target, timeout=5),
        ):  # foreign CA; plaintext
            assert _refused(wrong) == grpc.StatusCode.UNAVAILABLE
            wrong.close()
        assert status(f"127.0.0.1:{running.health_port}") == SERVING  # plaintext probe port
        assert status(target) is None  # the service port itself never speaks plaintext
    finally:
        running.stop(grace=1.0)


def test_web_port_uses_the_same_tls_and_mutual_tls(pki, store) -> None:  # type: ignore[no-untyped-def]
    from cryptorec.services.web.server import WebConfig

    def web(client_ca: Path | None) -> WebConfig:
        return WebConfig(
            0, tls_cert=pki["server_crt"], tls_key=pki["server_key"], tls_client_ca=client_ca
        )

    trusting = ssl.create_default_context(cafile=str(pki["ca"]))
    get_model = "/cryptorec.v1.ModelService/GetModel"
    running = start(
        ("model",), store, tls=ServerTls(pki["server_crt"], pki["server_key"]), web=web(None)
    )
    try:
        assert running.web is not None
        url = running.web.url
        assert url.startswith("https://")
        assert grpc_web_call(url, get_model, b"", context=trusting).grpc_status == 0
        with pytest.raises(urllib.error.URLError):  # a browser that does not trust the CA
            grpc_web_call(url, get_model, b"", context=ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plaintext
            grpc_web_call(url.replace("https", "http"), get_model, b"")
    finally:
        running.stop(grace=1.0)

    running = start(
        ("model",), store, tls=ServerTls(pki["server_crt"], pki["server_key"]), web=web(pki["ca"])
    )
    try:
        assert running.web is not None
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            grpc_web_call(running.web.url, get_model, b"", context=trusting)  # no certificate
        trusting.load_cert_chain(pki["client_crt"], pki["client_key"])
        assert grpc_web_call(running.web.url, get_model, b"", context=trusting).grpc_status == 0
    finally:
        running.stop(grace=1.0)


def test_mutual_tls_requires_a_client_certificate(pki, store) -> None:  # type: ignore[no-untyped-def]
    running = start(
        ("key", "model", "evaluator"),
        store,
        tls=ServerTls(pki["server_crt"], pki["server_key"], client_ca=pki["ca"]),
    )
    target = f"127.0.0.1:{running.port}"
    try:
        anonymous = CryptoRecClient(target, tls=ClientTls(pki["ca"]), timeout=5)
        assert _refused(anonymous) == grpc.StatusCode.UNAVAILABLE
        anonymous.close()
        client = CryptoRecClient(
            target, tls=ClientTls(pki["ca"], pki["client_crt"], pki["client_key"]), timeout=20
        )
        predictions, _ = client.predict(RATINGS)
        np.testing.assert_allclose(predictions, _library_prediction("fast"), atol=1e-3)
        client.close()
    finally:
        running.stop(grace=1.0)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_redis_over_mutual_tls(pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    tls = [
        "--tls-port",
        str(port),
        "--tls-cert-file",
        str(pki["server_crt"]),
        "--tls-key-file",
        str(pki["server_key"]),
        "--tls-ca-cert-file",
        str(pki["ca"]),
    ]
    # --port 0: no plaintext listener at all
    proc = subprocess.Popen(redis_command(0, tmp_path, extra=tls), stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            pytest.skip("this redis-server was built without TLS")
        query = (
            f"ssl_ca_certs={pki['ca']}&ssl_certfile={pki['client_crt']}"
            f"&ssl_keyfile={pki['client_key']}"
        )
        store = RedisStore(
            f"rediss://127.0.0.1:{port}/0?{query}", prefix=f"tls-{uuid.uuid4().hex[:6]}:"
        )
        store.publish("v1", {"model": b"bytes over TLS"}, {})
        assert store.read("v1")[1] == {"model": b"bytes over TLS"}
        wrong = RedisStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki['other']}")
        with pytest.raises(StoreError, match="unavailable"):  # the TLS handshake fails
            wrong.current()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
