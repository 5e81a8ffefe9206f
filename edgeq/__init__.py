"""edgeq: quantize Vision Transformers to INT8 with NNCF and serve them with OpenVINO.

    import edgeq
    result = edgeq.quantize("timm:edgeq_vit_fmnist", calibration="calib.npz", store="models", name="vit")
    print(result.version, result.report.accuracy)

Heavy modules (OpenVINO, NNCF, torch) are imported only when used.
"""

from __future__ import annotations

from typing import Any

from edgeq._offline import disable_telemetry
from edgeq.errors import (
    AlreadyExists, Cancelled, DeadlineExceeded, EdgeqError, FailedPrecondition, InternalError,
    InvalidArgument, NotFound, ResourceExhausted, Unimplemented,
)

__version__ = "0.1.0"
disable_telemetry()

__all__ = [
    "AlreadyExists", "Cancelled", "DeadlineExceeded", "EdgeqError", "FailedPrecondition", "InternalError",
    "InvalidArgument", "NotFound", "ResourceExhausted", "Unimplemented", "__version__", "quantize",
]


def quantize(model: str, *, calibration: str, store: str, name: str, **options: Any) -> Any:
    """Quantize `model` and publish it in `store` as a new version of `name`; returns a QuantizeResult.

    `options` are the fields of `edgeq.quantization.pipeline.QuantizeRequest` (metric, budget, recipe, ...).
    """
    from edgeq.quantization.pipeline import QuantizeRequest, run

    on_event = options.pop("on_event", None)
    request = QuantizeRequest(model=model, calibration=calibration, store=store, name=name, **options)
    return run(request, on_event) if on_event else run(request)
