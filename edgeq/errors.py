"""edgeq's one exception tree.

    EdgeqError
    ├── InvalidArgument      the caller sent something wrong (shape, dtype, name, corrupt file)
    ├── NotFound             a model, version, job or artifact that does not exist
    ├── AlreadyExists        a name or version that is taken
    ├── FailedPrecondition   the system is not in a state to do this (missing extra, version loading)
    ├── ResourceExhausted    a size, queue or count cap was hit
    ├── Cancelled            the job was cancelled
    ├── DeadlineExceeded     a time budget ran out
    ├── Unimplemented        this install cannot do that (e.g. serve-only, no quantization extra)
    ├── Unavailable          not now, retry: the server is stopping or the model version unloading
    └── InternalError        a bug or a crash of a dependency (OpenVINO, NNCF) we could not classify

Adapters translate OpenVINO/NNCF/torch errors into this tree at the boundary; the gRPC
transport maps each class to exactly one status code (`edgeq_server.errors`).
"""

from __future__ import annotations


class EdgeqError(Exception):
    """Root of every error edgeq raises on purpose."""


class InvalidArgument(EdgeqError):
    pass


class NotFound(EdgeqError):
    pass


class AlreadyExists(EdgeqError):
    pass


class FailedPrecondition(EdgeqError):
    pass


class ResourceExhausted(EdgeqError):
    pass


class Cancelled(EdgeqError):
    pass


class DeadlineExceeded(EdgeqError):
    pass


class Unimplemented(EdgeqError):
    pass


class Unavailable(EdgeqError):
    pass


class InternalError(EdgeqError):
    pass
