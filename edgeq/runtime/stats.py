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
    batches: dict[int, Duration] = field(default_factory=dict)  # OpenVINO calls and their time, by rows merged
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_success(self, rows: int, queue_ns: int, compute_ns: int, total_ns: int) -> None:
        """One caller answered: `rows` samples, after `queue_ns` waiting and `compute_ns` in OpenVINO."""
        with self._lock:
            self.success.add(total_ns)
            self.queue.add(queue_ns)
            self.compute_infer.add(compute_ns)
            self.inference_count += rows
            self.last_inference_ms = int(time.time() * 1000)

    def record_execution(self, rows: int, compute_ns: int) -> None:
        """One OpenVINO call, which may have merged several callers' rows."""
        with self._lock:
            self.execution_count += 1
            self.batches.setdefault(rows, Duration()).add(compute_ns)

    def record_failure(self, total_ns: int) -> None:
        with self._lock:
            self.fail.add(total_ns)
