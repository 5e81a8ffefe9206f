"""Bearer tokens for the gRPC and HTTP APIs, from a token file.

Token file: one `<scope> <token>` per line (`#` comments). Scopes:
- `manage`: every RPC (uploads, jobs, model deletion and export, repository load/unload, inference);
- `infer`: inference and read-only metadata only.

Management RPCs always need a `manage` token when a token file is configured; inference needs an
`infer` or `manage` token only with `require_infer_token`. Health checks and reflection stay open
(orchestrators probe them). Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from edgeq.errors import InvalidArgument
from edgeq_server.interceptors import replace_behaviour

SCOPES = ("manage", "infer")
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
MANAGE_PREFIXES = ("/edgeq.v1.",)
UNAUTHENTICATED, PERMISSION_DENIED = "UNAUTHENTICATED", "PERMISSION_DENIED"
MANAGE_METHODS = ("/inference.GRPCInferenceService/RepositoryModelLoad",
                  "/inference.GRPCInferenceService/RepositoryModelUnload")


@dataclass(frozen=True)
class TokenTable:
    entries: tuple[tuple[str, bytes], ...]  # (scope, token)

    @classmethod
    def load(cls, path: Path) -> "TokenTable":
        entries = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or parts[0] not in SCOPES or len(parts[1]) < 16:
                raise InvalidArgument(f"{path}:{number}: expected '<manage|infer> <token of 16+ characters>'")
            entries.append((parts[0], parts[1].encode()))
        if not entries:
            raise InvalidArgument(f"{path}: no tokens")
        return cls(tuple(entries))

    def scope_of(self, token: bytes) -> str | None:
        found = None
        for scope, known in self.entries:  # look at every entry: no early exit, constant time per entry
            if hmac.compare_digest(known, token) and found != "manage":
                found = scope
        return found

    def refusal(self, authorization: str, needed: str) -> str | None:
        """None when an `Authorization: Bearer <token>` value grants `needed`; else UNAUTHENTICATED
        (no known token) or PERMISSION_DENIED (an infer token where manage is needed). Both doors ask here."""
        token = authorization[len("Bearer "):].encode() if authorization.startswith("Bearer ") else b""
        scope = self.scope_of(token) if token else None
        if scope is None:
            return UNAUTHENTICATED
        if needed == "manage" and scope != "manage":
            return PERMISSION_DENIED
        return None


def unauthenticated_message(authorization: str, missing: str) -> str:
    """Why a request was UNAUTHENTICATED: `missing` when it carried no token, else that its token is unknown."""
    if authorization.startswith("Bearer ") and authorization[len("Bearer "):].strip():
        return "the bearer token given is not one of this server's tokens (a typo, or a token from another server?)"
    return missing


def required_scope(method: str, require_infer_token: bool) -> str | None:
    if method.startswith(OPEN_PREFIXES):
        return None
    if method.startswith(MANAGE_PREFIXES) or method in MANAGE_METHODS:
        return "manage"
    return "infer" if require_infer_token else None


class TokenAuth(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenTable, require_infer_token: bool = False):
        self.tokens = tokens
        self.require_infer_token = require_infer_token

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        needed = required_scope(details.method, self.require_infer_token)
        if handler is None or needed is None:
            return handler
        header = dict(details.invocation_metadata or ()).get("authorization", "")
        header = header if isinstance(header, str) else ""
        refusal = self.tokens.refusal(header, needed)
        if refusal is None:
            return handler
        if refusal == UNAUTHENTICATED:
            code = grpc.StatusCode.UNAUTHENTICATED
            message = unauthenticated_message(header, "this RPC needs 'authorization: Bearer <token>' metadata")
        else:
            code, message = grpc.StatusCode.PERMISSION_DENIED, "this RPC needs a token with the 'manage' scope"

        async def deny(_request: object, context: grpc.aio.ServicerContext) -> None:
            await context.abort(code, message)

        return replace_behaviour(handler, lambda _behaviour: deny)
