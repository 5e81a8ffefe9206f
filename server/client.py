"""A Python client for edgeq's management API: upload, submit, watch, export.

`Security` says how to reach a secured server: the CA that signed its certificate (TLS), a client
certificate and key (mTLS) and a bearer token (from a file holding the bare token, or
`EDGEQ_TOKEN`). The token travels as `authorization: Bearer ...` metadata on every call, through a
client interceptor, so it works on a TLS channel and on a plain loopback one alike.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from edgeq.artifacts import iter_file
from edgeq.errors import InvalidArgument, Unavailable
from edgeq.store.repository import sha256_file
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from edgeq_server.gen.edgeq.v1 import edgeq_pb2_grpc as pb_grpc

CHUNK = 1 << 20
MAX_MESSAGE = 64 * 2**20


TOKEN_VARIABLE = "EDGEQ_TOKEN"
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]


def read_token(token_file: str | Path | None = None) -> str | None:
    """The bare token from `token_file`, else from EDGEQ_TOKEN, else None."""
    if token_file:
        path = Path(token_file)
        try:
            token = path.read_text().strip()
        except OSError as error:
            raise InvalidArgument(f"cannot read the token file {path}: {error.strerror}") from None
        if not token or len(token.split()) != 1:
            raise InvalidArgument(f"{path}: expected the bare token (one word), as the server's token file lists it "
                                  "after its scope")
        return token
    return os.environ.get(TOKEN_VARIABLE, "").strip() or None


def _read(path: str | Path | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidArgument(f"cannot read the {what} {path}: {error.strerror}") from None


@dataclass(frozen=True)
class Security:
    """How a client reaches a server: TLS with `ca` (or the system's roots with `tls`), mTLS with
    `cert` and `key`, a bearer `token`. All unset: a plain channel (loopback servers)."""

    ca: str | Path | None = None
    cert: str | Path | None = None
    key: str | Path | None = None
    token: str | None = None
    tls: bool = False

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise InvalidArgument("a client certificate needs both --cert and --key")

    @classmethod
    def from_files(cls, ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None,
                   token_file: str | Path | None = None, tls: bool = False) -> "Security":
        """The CLI's flags: paths, and the token read from its file or EDGEQ_TOKEN."""
        return cls(ca, cert, key, read_token(token_file), tls)

    @property
    def secure(self) -> bool:
        return bool(self.tls or self.ca or self.cert)

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.secure:
            return None
        return grpc.ssl_channel_credentials(root_certificates=_read(self.ca, "CA certificate"),
                                            private_key=_read(self.key, "client key"),
                                            certificate_chain=_read(self.cert, "client certificate"))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self, target: str, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
        """A blocking channel to `target` carrying the token on every call."""
        options = options or MESSAGE_OPTIONS
        credentials = self.credentials()
        channel = (grpc.secure_channel(target, credentials, options=options) if credentials
                   else grpc.insecure_channel(target, options=options))
        return grpc.intercept_channel(channel, _TokenInterceptor(self.metadata())) if self.token else channel

    def aio_channel(self, target: str, options: list[tuple[str, Any]] | None = None) -> grpc.aio.Channel:
        """The same for grpc.aio (the load generator)."""
        options = options or MESSAGE_OPTIONS
        credentials = self.credentials()
        interceptors = _aio_token_interceptors(self.metadata()) if self.token else None
        if credentials:
            return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


class _CallDetails(NamedTuple("_CallDetails", [("method", str), ("timeout", Any), ("metadata", Any),
                                                ("credentials", Any), ("wait_for_ready", Any),
                                                ("compression", Any)]), grpc.ClientCallDetails):  # type: ignore[misc]
    """grpc.ClientCallDetails is abstract: the usual concrete form is a named tuple."""


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
                        grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call of a blocking channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]):
        self.extra = metadata

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details.method, details.timeout, [*(details.metadata or ()), *self.extra],
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def _aio_token_interceptors(metadata: tuple[tuple[str, str], ...]) -> list[Any]:
    """grpc.aio's interceptors for the two call kinds the load generator uses."""

    def details_with_token(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(details.method, details.timeout,
                                          grpc.aio.Metadata(*(details.metadata or ()), *metadata),
                                          details.credentials, details.wait_for_ready)

    class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(details_with_token(details), request)

    class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(details_with_token(details), request)

    return [UnaryUnary(), UnaryStream()]


class EdgeqClient:
    """Management API client. `security` (or the `ca`/`cert`/`key`/`token` shortcuts) reaches a
    TLS, mTLS or token-protected server; `channel` replaces the whole connection."""

    def __init__(self, target: str = "127.0.0.1:8001", channel: grpc.Channel | None = None, *,
                 security: Security | None = None, ca: str | Path | None = None, cert: str | Path | None = None,
                 key: str | Path | None = None, token: str | None = None):
        if security is None:
            security = Security(ca, cert, key, token if token is not None else read_token())
        self.security = security
        self.channel = channel or security.channel(target)
        self.artifacts = pb_grpc.ArtifactsStub(self.channel)
        self.quantization = pb_grpc.QuantizationStub(self.channel)
        self.models = pb_grpc.ModelsStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "EdgeqClient":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def upload(self, path: str | Path) -> pb.Artifact:
        path = Path(path)
        info = pb.UploadInfo(filename=path.name, sha256=sha256_file(path), size=path.stat().st_size)

        def chunks() -> Iterator[pb.UploadChunk]:
            yield pb.UploadChunk(info=info)  # the server reads the file's name, size and sha256 first
            yield from (pb.UploadChunk(data=block) for block in iter_file(path, CHUNK))

        return self.artifacts.Upload(chunks())

    def submit(self, spec: pb.JobSpec) -> pb.Job:
        return self.quantization.Submit(spec)

    def watch(self, job_id: str, on_event: Callable[[pb.JobEvent], None] | None = None) -> pb.Job:
        for event in self.quantization.Watch(pb.JobRef(id=job_id)):
            if on_event:
                on_event(event)
        return self.quantization.Get(pb.JobRef(id=job_id))

    def export(self, name: str, version: int, out_dir: str | Path) -> Path:
        """Download a bundle; verifies the sha256 the server announces in its last chunk."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        target: Path | None = None
        announced = ""
        partial = out_dir / f".{name}-{version}.partial"
        with open(partial, "wb") as stream:
            for chunk in self.models.Export(pb.ModelRef(name=name, version=version)):
                if chunk.filename:
                    target = out_dir / Path(chunk.filename).name
                if chunk.data:
                    digest.update(chunk.data)
                    stream.write(chunk.data)
                if chunk.sha256:
                    announced = chunk.sha256
        if target is None or announced != digest.hexdigest():
            partial.unlink(missing_ok=True)
            raise Unavailable("bundle download incomplete or corrupted (sha256 mismatch); try again")
        partial.replace(target)
        return target

    def report(self, name: str, version: int = 0) -> dict[str, Any]:
        return dict(json.loads(self.models.GetReport(pb.ModelRef(name=name, version=version)).json))
