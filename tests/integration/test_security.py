"""TLS, mTLS and bearer tokens on the gRPC port; refusing to expose an open server."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeq_server.gen.edgeq.v1 import edgeq_pb2, edgeq_pb2_grpc
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from tests.integration.server_process import ServerProcess

MANAGE = "m" * 8 + "-manage-token-0123"
INFER = "i" * 8 + "-infer-token-45678"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
          ca: bool = False, san: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san))]), False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(item: object) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[attr-defined]
                              serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key, rogue_key = _key(), _key(), _key(), _key()
    ca = _cert("edgeq test CA", ca_key, None, ca=True)
    files = {
        "ca.pem": _pem(ca), "server.pem": _pem(_cert("server", server_key, ("edgeq test CA", ca_key), san="127.0.0.1")),
        "server.key": _pem(server_key), "client.pem": _pem(_cert("client", client_key, ("edgeq test CA", ca_key))),
        "client.key": _pem(client_key), "rogue.pem": _pem(_cert("rogue", rogue_key, None)), "rogue.key": _pem(rogue_key),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


def test_mtls_refuses_clients_without_a_valid_certificate(pki: dict[str, Path], tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "store", "--tls-cert", str(pki["server.pem"]), "--tls-key", str(pki["server.key"]),
                           "--tls-client-ca", str(pki["ca.pem"])).start()
    try:
        def live(cert: str | None, key: str | None) -> bool:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=pki["ca.pem"].read_bytes(),
                private_key=pki[key].read_bytes() if key else None,
                certificate_chain=pki[cert].read_bytes() if cert else None)
            with grpc.secure_channel(server.target, credentials) as channel:
                return pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5).live

        assert live("client.pem", "client.key")
        for cert, key in ((None, None), ("rogue.pem", "rogue.key")):
            with pytest.raises(grpc.RpcError) as caught:
                live(cert, key)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(server.target) as plain, pytest.raises(grpc.RpcError):
            pb_grpc.GRPCInferenceServiceStub(plain).ServerLive(pb.ServerLiveRequest(), timeout=5)
    finally:
        assert server.stop() == 0


def test_tokens_and_scopes(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# scope token\nmanage {MANAGE}\ninfer {INFER}\n")
    server = ServerProcess(tmp_path / "store", "--token-file", str(tokens), "--require-infer-token").start()
    try:
        channel = server.channel()
        models = edgeq_pb2_grpc.ModelsStub(channel)
        inference = pb_grpc.GRPCInferenceServiceStub(channel)

        details: list[str] = []

        def code(call, request, token: str | None) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
            metadata = [("authorization", f"Bearer {token}")] if token else []
            try:
                call(request, metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                details.append(error.details())
                return error.code()
            return grpc.StatusCode.OK

        list_models = edgeq_pb2.ListModelsRequest()
        assert code(models.List, list_models, None) == grpc.StatusCode.UNAUTHENTICATED
        assert "needs 'authorization: Bearer <token>' metadata" in details[-1]
        assert code(models.List, list_models, "wrong-token-wrong-token") == grpc.StatusCode.UNAUTHENTICATED
        assert "the bearer token given is not one of this server's tokens" in details[-1]  # given, but unknown
        assert code(models.List, list_models, INFER) == grpc.StatusCode.PERMISSION_DENIED
        assert code(models.List, list_models, MANAGE) == grpc.StatusCode.OK
        live = pb.ServerLiveRequest()
        assert code(inference.ServerLive, live, None) == grpc.StatusCode.UNAUTHENTICATED
        assert code(inference.ServerLive, live, INFER) == grpc.StatusCode.OK
        unload = pb.RepositoryModelUnloadRequest(model_name="x")
        assert code(inference.RepositoryModelUnload, unload, INFER) == grpc.StatusCode.PERMISSION_DENIED
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes need no token
    finally:
        server.stop()
    assert MANAGE not in server.log.read_text() and INFER not in server.log.read_text()


def test_refuses_an_open_non_loopback_server(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "edgeq.cli", "serve", "--store", str(tmp_path), "--host", "0.0.0.0",
                          "--port", "0"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "refusing to listen on 0.0.0.0 without TLS or tokens" in run.stderr
    assert "--insecure" in run.stderr


def test_config_rules() -> None:
    from edgeq.errors import InvalidArgument
    from edgeq_server.app import ServerConfig

    assert ServerConfig(host="0.0.0.0", insecure=True).insecure  # allowed when asked for explicitly
    for bad in (dict(tls_cert=Path("c.pem")), dict(require_infer_token=True), dict(tls_client_ca=Path("ca.pem"))):
        with pytest.raises(InvalidArgument):
            ServerConfig(**bad)  # type: ignore[arg-type]
