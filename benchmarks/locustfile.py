"""Locust load test of a KServe v2 gRPC server (edgeq, OVMS, Triton) with unmodified tritonclient.

    pip install locust tritonclient[grpc]
    EDGEQ_MODEL=vit-fmnist locust -f benchmarks/locustfile.py --headless -u 16 -r 4 -t 60s \\
        --host 127.0.0.1:8001 --csv results/vit

    EDGEQ_MODEL        model name (required)
    EDGEQ_VERSION      version ("" = the server's choice)
    EDGEQ_DATA         .npz with 'inputs' (N, ...) used round-robin; default: random inputs of the model's shape
    EDGEQ_BATCH        requests carry this many samples (default 1)

Every user holds its own gRPC channel and sends the next request when the last one returns (closed
loop, like `edgeq bench`); each inference is reported to Locust as request type "grpc" named
"infer <model>", with response size in bytes, and failures carry the gRPC status code.
`edgeq bench` is the better tool on a 2-core box (no Python per-user greenlets competing with the
server); Locust is here for teams that already run it.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from locust import User, between, events, task

DTYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


class KServeGrpcUser(User):
    wait_time = between(0, 0)

    def on_start(self) -> None:
        import tritonclient.grpc as grpcclient

        self.model = os.environ["EDGEQ_MODEL"]
        self.version = os.environ.get("EDGEQ_VERSION", "")
        self.client = grpcclient.InferenceServerClient(self.host or "127.0.0.1:8001")
        metadata = self.client.get_model_metadata(self.model, self.version)
        spec = metadata.inputs[0]
        self.input_name, self.datatype = spec.name, spec.datatype
        batch = int(os.environ.get("EDGEQ_BATCH", "1"))
        shape = [batch, *[max(1, int(d)) for d in spec.shape[1:]]]
        if os.environ.get("EDGEQ_DATA"):
            inputs = np.load(os.environ["EDGEQ_DATA"])["inputs"].astype(DTYPES[self.datatype])
            self.batches = [inputs[i:i + batch] for i in range(0, len(inputs) - batch + 1, batch)]
        else:
            self.batches = [np.random.default_rng(0).standard_normal(shape).astype(DTYPES[self.datatype])]
        self.next = 0

    @task
    def infer(self) -> None:
        import tritonclient.grpc as grpcclient

        batch = self.batches[self.next % len(self.batches)]
        self.next += 1
        request = grpcclient.InferInput(self.input_name, list(batch.shape), self.datatype)
        request.set_data_from_numpy(batch)
        started = time.perf_counter()
        error: Any = None
        size = 0
        try:
            result = self.client.infer(self.model, [request], model_version=self.version)
            size = sum(len(raw) for raw in result.get_response().raw_output_contents)
        except Exception as failure:  # noqa: BLE001 - reported to Locust, not raised
            error = failure
        events.request.fire(request_type="grpc", name=f"infer {self.model}", response_time=(time.perf_counter() - started) * 1000,
                            response_length=size, exception=error, context={})
