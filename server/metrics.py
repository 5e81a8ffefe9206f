"""Prometheus metrics on their own port and registry (no module-global state)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


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

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the /metrics endpoint; returns the bound port (port 0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
