"""Throughput of one compiled model on this CPU: OpenVINO's AsyncInferQueue kept full for a while.

One measuring loop for every place edgeq times models: the job's speed table
(edgeq.quantization.speed) and the edge box's choice between the INT8 and the float IR
(edgeq.runtime.choice). It sits in the runtime, below both, because the edge box installs the
serve-only runtime (no NNCF, no quantization package) and must still measure.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import openvino as ov


def throughput(compiled: ov.CompiledModel, batch: dict[Any, np.ndarray], seconds: float) -> float:
    """Rows per second with every infer request of the queue busy (after one warm-up pass each)."""
    queue = ov.AsyncInferQueue(compiled)
    done = 0

    def count(_request: ov.InferRequest, _data: Any) -> None:
        nonlocal done
        done += 1

    queue.set_callback(count)
    for _ in range(len(queue)):  # warm-up
        queue.start_async(batch)
    queue.wait_all()
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        queue.start_async(batch)
    queue.wait_all()
    return done * len(next(iter(batch.values()))) / (time.perf_counter() - started)


def alternating_medians(compiled: dict[str, ov.CompiledModel], batch: dict[Any, np.ndarray], seconds: float,
                        rounds: int) -> dict[str, float]:
    """Median rows/s of each model over `rounds`, the models taking turns within every round so a
    drifting machine slows them alike (callers compare ratios, never absolute times)."""
    measured: dict[str, list[float]] = {key: [] for key in compiled}
    for _ in range(rounds):
        for key, model in compiled.items():
            measured[key].append(throughput(model, batch, seconds))
    return {key: statistics.median(values) for key, values in measured.items()}
