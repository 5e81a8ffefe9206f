"""Per-version inference statistics (the KServe/Triton ModelStatistics fields)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass
class VersionStats:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    inference_count: int = 0  # samples (batch elements)
    execution_count: int = 0  # model executions
    last_inference_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_success(self, batch: int, queue_ns: int, compute_ns: int, total_ns: int) -> None:
        with self._lock:
            self.success.add(total_ns)
            self.queue.add(queue_ns)
            self.compute_infer.add(compute_ns)
            self.inference_count += batch
            self.execution_count += 1
            self.last_inference_ms = int(time.time() * 1000)

    def record_failure(self, total_ns: int) -> None:
        with self._lock:
            self.fail.add(total_ns)
