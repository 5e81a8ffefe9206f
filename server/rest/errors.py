"""The one place where edgeq's errors become HTTP statuses (the REST twin of edgeq_server.errors).

The statuses are the canonical HTTP equivalents of the gRPC codes the same errors get on the gRPC
front door (google.rpc.Code's documented mapping), so both doors tell a client the same thing.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from edgeq import errors

STATUS: dict[type[errors.EdgeqError], int] = {
    errors.InvalidArgument: HTTPStatus.BAD_REQUEST,
    errors.NotFound: HTTPStatus.NOT_FOUND,
    errors.AlreadyExists: HTTPStatus.CONFLICT,
    errors.FailedPrecondition: HTTPStatus.BAD_REQUEST,
    errors.ResourceExhausted: HTTPStatus.TOO_MANY_REQUESTS,
    errors.Cancelled: 499,  # "client closed request": google.rpc.Code CANCELLED's HTTP mapping
    errors.DeadlineExceeded: HTTPStatus.GATEWAY_TIMEOUT,
    errors.Unimplemented: HTTPStatus.NOT_IMPLEMENTED,
    errors.Unavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    errors.InternalError: HTTPStatus.INTERNAL_SERVER_ERROR,
}
UNAUTHENTICATED = HTTPStatus.UNAUTHORIZED
PERMISSION_DENIED = HTTPStatus.FORBIDDEN


def status_of(error: BaseException) -> int:
    return next((STATUS[kind] for kind in type(error).__mro__ if kind in STATUS),  # type: ignore[index]
                int(HTTPStatus.INTERNAL_SERVER_ERROR))


def error_body(message: str) -> bytes:
    """KServe v2's error body: `{"error": "<message>"}`."""
    return json.dumps({"error": message}).encode()
