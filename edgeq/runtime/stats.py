"""Per-version inference statistics (the KServe/Triton ModelStatistics fields, and the histograms
behind the per-model Prometheus metrics). Recorded by the engine, so both front doors feed them."""

from __future__ import annotations

import bisect
import copy
import threading
import time
from dataclasses import dataclass, field

# Upper bounds (seconds) of the latency and queue-time histograms' buckets; +Inf is implied.
SECONDS_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass
class Histogram:
    """Counts per bucket (a value lands in the first bucket whose bound it does not exceed) and the sum."""

    bounds_ns: tuple[int, ...] = tuple(int(b * 1e9) for b in SECONDS_BOUNDS)
    counts: list[int] = field(default_factory=lambda: [0] * (len(SECONDS_BOUNDS) + 1))
    sum_ns: int = 0

    def add(self, ns: int) -> None:
        self.counts[bisect.bisect_left(self.bounds_ns, ns)] += 1
        self.sum_ns += ns


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
    latency: Histogram = field(default_factory=Histogram)  # successful requests, arrival to answer
    queue_time: Histogram = field(default_factory=Histogram)  # successful requests, waiting for OpenVINO
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_success(self, rows: int, queue_ns: int, compute_ns: int, total_ns: int) -> None:
        """One caller answered: `rows` samples, after `queue_ns` waiting and `compute_ns` in OpenVINO."""
        with self._lock:
            self.success.add(total_ns)
            self.latency.add(total_ns)
            self.queue.add(queue_ns)
            self.queue_time.add(queue_ns)
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

    def snapshot(self) -> "VersionStats":
        """A consistent copy (a metrics scrape reads from another thread while requests record)."""
        with self._lock:
            return VersionStats(**{name: copy.deepcopy(getattr(self, name)) for name in self.__dataclass_fields__
                                   if name != "_lock"})
