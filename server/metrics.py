"""Prometheus metrics on their own port and registry (no module-global state).

Per model version (labels `model`, `version`), read from the runtime's statistics at scrape time, so
gRPC and HTTP requests count alike; named after Triton's where Triton has one (nv_inference_* ->
edgeq_inference_*; counters get the `_total` suffix of the exposition format):

    edgeq_inference_request_success_total / _failure_total     requests answered / failed
    edgeq_inference_count_total / edgeq_inference_exec_count_total   samples (rows) / OpenVINO executions
    edgeq_inference_request_duration_us_total, _queue_duration_us_total, _compute_infer_duration_us_total
    edgeq_inference_request_seconds, edgeq_inference_queue_seconds   histograms per request
    edgeq_inference_batch_size                                  histogram of rows per OpenVINO execution
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeq.runtime.stats import SECONDS_BOUNDS
from edgeq.runtime.stats import Histogram as Buckets

LATENCY_BUCKETS = SECONDS_BOUNDS
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LABELS = ["model", "version"]


def _seconds_histogram(name: str, documentation: str, rows: Sequence[tuple[list[str], Buckets]]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=LABELS)
    for labels, buckets in rows:
        cumulative, total = [], 0
        for bound, count in zip([*(f"{b:g}" for b in SECONDS_BOUNDS), "+Inf"], buckets.counts):
            total += count
            cumulative.append((bound, total))
        family.add_metric(labels, cumulative, buckets.sum_ns / 1e9)
    return family


class ModelStatistics(Collector):
    """The per-version metrics, from `loaded()` (the LoadedVersions being served) at each scrape."""

    def __init__(self, loaded: Callable[[], Sequence[Any]]):
        self.loaded = loaded

    def collect(self) -> Iterator[Metric]:
        for _attempt in range(3):  # the event loop may load or unload a version while this thread reads
            try:
                rows = [([lv.name, str(lv.version)], lv.stats.snapshot()) for lv in self.loaded()]
                break
            except RuntimeError:  # dictionary changed size during iteration
                continue
        else:
            return
        counters = [
            ("edgeq_inference_request_success", "successful inference requests", lambda s: s.success.count),
            ("edgeq_inference_request_failure", "failed inference requests", lambda s: s.fail.count),
            ("edgeq_inference_count", "samples (batch rows) inferred", lambda s: s.inference_count),
            ("edgeq_inference_exec_count", "OpenVINO executions (merged batches count once)",
             lambda s: s.execution_count),
            ("edgeq_inference_request_duration_us", "cumulative request time, microseconds",
             lambda s: s.success.ns // 1000),
            ("edgeq_inference_queue_duration_us", "cumulative time requests waited for OpenVINO, microseconds",
             lambda s: s.queue.ns // 1000),
            ("edgeq_inference_compute_infer_duration_us", "cumulative OpenVINO time, microseconds",
             lambda s: s.compute_infer.ns // 1000),
        ]
        for name, documentation, value in counters:
            family = CounterMetricFamily(name, documentation, labels=LABELS)
            for labels, stats in rows:
                family.add_metric(labels, value(stats))
            yield family
        yield _seconds_histogram("edgeq_inference_request_seconds", "successful request latency in seconds",
                                 [(labels, stats.latency) for labels, stats in rows])
        yield _seconds_histogram("edgeq_inference_queue_seconds", "time a request waited for OpenVINO, seconds",
                                 [(labels, stats.queue_time) for labels, stats in rows])
        batch = HistogramMetricFamily("edgeq_inference_batch_size", "rows per OpenVINO execution", labels=LABELS)
        for labels, stats in rows:
            cumulative = []
            for bound in BATCH_BOUNDS:
                total = sum(d.count for size, d in stats.batches.items() if size <= bound)
                cumulative.append((str(bound), total))
            rows_sum = sum(size * d.count for size, d in stats.batches.items())
            cumulative.append(("+Inf", sum(d.count for d in stats.batches.values())))
            batch.add_metric(labels, cumulative, rows_sum)
        yield batch


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("edgeq_grpc_requests", "gRPC requests by method and status code",
                                ["method", "code"], registry=self.registry)
        self.latency = Histogram("edgeq_grpc_request_seconds", "gRPC request latency in seconds", ["method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.http_requests = Counter("edgeq_http_requests", "HTTP requests by endpoint (the gRPC method's name) "
                                     "and status", ["endpoint", "code"], registry=self.registry)
        self.http_latency = Histogram("edgeq_http_request_seconds", "HTTP request latency in seconds (successes)",
                                      ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inflight = Gauge("edgeq_inference_inflight", "inference requests in flight (queue depth)",
                              registry=self.registry)
        self.jobs = Gauge("edgeq_jobs", "quantization jobs by state", ["state"], registry=self.registry)
        self.loaded_models = Gauge("edgeq_loaded_model_versions", "model versions loaded for serving",
                                   registry=self.registry)

    def watch(self, loaded_versions: Callable[[], int], inflight: Callable[[], int],
              jobs_in_state: Callable[[str], int], states: tuple[str, ...]) -> None:
        """Gauges read their value at scrape time, so they are never stale."""
        self.loaded_models.set_function(loaded_versions)
        self.inflight.set_function(inflight)
        for state in states:
            self.jobs.labels(state).set_function(partial(jobs_in_state, state))

    def watch_models(self, loaded: Callable[[], Sequence[Any]]) -> None:
        """Per-model metrics from the runtime's statistics of the versions `loaded()` returns."""
        self.registry.register(ModelStatistics(loaded))

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics endpoint; returns the bound port (port 0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
