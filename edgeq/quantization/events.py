"""Progress events a quantization job emits, for progress bars, gRPC Watch streams and logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    fraction: float  # of the whole job, 0..1
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "fraction": self.fraction, "message": self.message, "metrics": self.metrics}


EventSink = Callable[[ProgressEvent], None]


def ignore(_event: ProgressEvent) -> None:
    return None
