"""edgeq: quantize Vision Transformers to INT8 with NNCF and serve them with OpenVINO.

    import edgeq
    result = edgeq.quantize("timm:edgeq_vit_fmnist", "calib.npz", store="models", name="vit", max_drop=0.005)
    print(result.version, result.report.accuracy)

`edgeq.quantize` also takes an `openvino.Model` and numpy arrays or samples in memory; its keyword
options are the fields of `edgeq.options.QuantizeOptions`.

Heavy modules (OpenVINO, NNCF, torch) are imported only when used.
"""

from __future__ import annotations

from edgeq.api import quantize
from edgeq.errors import (
    AlreadyExists, Cancelled, DeadlineExceeded, EdgeqError, FailedPrecondition, InternalError,
    InvalidArgument, NotFound, ResourceExhausted, Unimplemented,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyExists", "Cancelled", "DeadlineExceeded", "EdgeqError", "FailedPrecondition", "InternalError",
    "InvalidArgument", "NotFound", "ResourceExhausted", "Unimplemented", "__version__", "quantize",
]
