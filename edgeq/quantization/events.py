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


EventSink = Callable[[ProgressEvent], None]


def ignore(_event: ProgressEvent) -> None:
    return None
