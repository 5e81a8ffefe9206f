"""Exit codes of `edgeq` and the one place that turns an error into a one-line message and a code.

    0  done                      3  accuracy budget not met (the version is published and marked)
    1  the work ran and failed   4  user error: something named does not exist, is taken, or cannot
       (a job FAILED, a server      be read or written (a store, a file, a job, a model), or the
       not SERVING, bench errors,   server refused the credentials
       `models validate` problems)
    2  usage: a flag or value    5  server unreachable: nothing listens at --target, or TLS does not
       argparse or edgeq refuses    match (a TLS server without --ca, a plain server with --ca)
  130  interrupted (Ctrl-C)

gRPC errors of the remote commands are mapped here too, once: grpc is looked up only when it is
already loaded (the local commands never load it).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from edgeq.errors import EdgeqError, InvalidArgument

OK, FAILED, USAGE, BUDGET_NOT_MET, USER_ERROR, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

# gRPC status names -> exit code; anything else is FAILED
_GRPC_CODES = {
    "INVALID_ARGUMENT": USAGE, "OUT_OF_RANGE": USAGE,
    "NOT_FOUND": USER_ERROR, "ALREADY_EXISTS": USER_ERROR, "FAILED_PRECONDITION": USER_ERROR,
    "RESOURCE_EXHAUSTED": USER_ERROR, "UNAUTHENTICATED": USER_ERROR, "PERMISSION_DENIED": USER_ERROR,
    "UNIMPLEMENTED": USER_ERROR,
    "UNAVAILABLE": UNREACHABLE, "DEADLINE_EXCEEDED": UNREACHABLE,
}
_HINTS = {
    "UNAUTHENTICATED": " (give the token with --token-file FILE or EDGEQ_TOKEN)",
    "PERMISSION_DENIED": " (this token's scope does not allow it: management needs a 'manage' token)",
}


@dataclass(frozen=True)
class Failure:
    code: int
    message: str


def _grpc_failure(error: BaseException, target: str | None) -> Failure | None:
    grpc = sys.modules.get("grpc")
    if grpc is None or not isinstance(error, grpc.RpcError) or not hasattr(error, "code"):
        return None
    name = error.code().name
    details = (error.details() or "").strip()
    if name in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        where = target or "the server"
        lowered = details.lower()
        if "ssl" in lowered or "handshake" in lowered or "certificate" in lowered or "tls" in lowered:
            hint = "TLS failed: give the CA that signed the server's certificate with --ca (and --cert/--key " \
                   "if it asks for a client certificate)"
        elif "socket closed" in lowered or "connection reset" in lowered:
            hint = "the connection was closed: does the server use TLS (give --ca) or require a client " \
                   "certificate (--cert/--key)?"
        else:
            hint = "is `edgeq serve` running there (see --target)?"
        return Failure(UNREACHABLE, f"cannot reach {where}: {hint} [{name}: {details.splitlines()[0] if details else ''}]")
    return Failure(_GRPC_CODES.get(name, FAILED), f"{details or name}{_HINTS.get(name, '')} [{name}]")


def describe(error: BaseException, target: str | None = None) -> Failure | None:
    """The exit code and one line for an error a user can cause; None for a bug (let it show)."""
    if isinstance(error, InvalidArgument):
        return Failure(USAGE, str(error))
    if isinstance(error, EdgeqError):
        return Failure(USER_ERROR, str(error))
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return Failure(USER_ERROR, f"{error.strerror}{where}")
    return _grpc_failure(error, target)
