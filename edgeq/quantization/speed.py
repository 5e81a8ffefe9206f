"""Throughput and latency of INT8 against true FP32 and OpenVINO's default float precision.

Measured in one run, alternating between the variants round by round (the machine is noisy;
ratios of interleaved medians are what we trust). On AMX CPUs the default runs float models in
BF16, so "INT8 vs default" is the honest speed-up; "INT8 vs FP32" is the flattering one.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import openvino as ov

from edgeq.compile import compile_cpu
from edgeq.data import feed
from edgeq.report.model import SpeedRow, SpeedSection
from edgeq.runtime.throughput import alternating_medians, throughput as _throughput


@dataclass(frozen=True)
class SpeedSettings:
    batch_sizes: tuple[int, ...] = (1,)
    seconds_per_round: float = 1.0
    rounds: int = 3


def _latency_ms(compiled: ov.CompiledModel, batch: dict[Any, np.ndarray], seconds: float) -> float:
    request = compiled.create_infer_request()
    request.infer(batch)
    samples: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(samples) < 3:
        begin = time.perf_counter()
        request.infer(batch)
        samples.append((time.perf_counter() - begin) * 1000)
    return statistics.median(samples)


def random_batch(input_shape: tuple[int, ...], batch_size: int, example: np.ndarray | None = None
                 ) -> dict[Any, np.ndarray]:
    """`example` repeated (a named sample, edgeq.data.feed) or seeded random floats of `input_shape`."""
    if example is not None:
        return feed.repeat(example, batch_size)
    return {0: np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)}


def throughputs(models: dict[str, ov.Model], batch: dict[Any, np.ndarray], settings: SpeedSettings
                ) -> tuple[dict[str, float], str]:
    """Median throughput of each model compiled as served (default precision, THROUGHPUT hint), the
    models alternating round by round as in `compare`; and the default float precision's name."""
    compiled = {key: compile_cpu(model, hint="THROUGHPUT") for key, model in models.items()}
    precision = next(iter(compiled.values())).get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return alternating_medians(compiled, batch, settings.seconds_per_round, settings.rounds), precision


def compare(float_model: ov.Model, int8_model: ov.Model, input_shape: tuple[int, ...],
            settings: SpeedSettings = SpeedSettings(), example: np.ndarray | None = None) -> SpeedSection:
    """`example`: a named sample (edgeq.data.feed) repeated into each batch, for models whose inputs
    are token ids rather than noise-tolerant floats; without it, random floats of `input_shape`."""
    variants = {"int8": (int8_model, "default"), "fp32": (float_model, "f32"), "float_default": (float_model, "default")}
    compiled_tp = {k: compile_cpu(m, precision=p, hint="THROUGHPUT") for k, (m, p) in variants.items()}
    compiled_lat = {k: compile_cpu(m, precision=p, hint="LATENCY") for k, (m, p) in variants.items()}
    default_precision = compiled_tp["float_default"].get_property("INFERENCE_PRECISION_HINT").get_type_name()
    results = SpeedSection({}, default_precision, settings.rounds, settings.seconds_per_round)
    for batch_size in settings.batch_sizes:
        batch = random_batch(input_shape, batch_size, example)
        tps: dict[str, list[float]] = {k: [] for k in variants}
        lats: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(settings.rounds):
            for key in variants:
                tps[key].append(_throughput(compiled_tp[key], batch, settings.seconds_per_round))
                lats[key].append(_latency_ms(compiled_lat[key], batch, settings.seconds_per_round / 2))
        tp, lat = ({k: statistics.median(v) for k, v in values.items()} for values in (tps, lats))
        results.batches[str(batch_size)] = SpeedRow(
            tp["int8"], tp["fp32"], tp["float_default"], lat["int8"], lat["fp32"], lat["float_default"],
            speedup_vs_fp32=tp["int8"] / tp["fp32"], speedup_vs_default=tp["int8"] / tp["float_default"])
    return results


def model_size_bytes(model: ov.Model) -> int:
    """Bytes of constant data (weights) in the graph."""
    return sum(int(op.get_byte_size()) for op in model.get_ops() if op.get_type_name() == "Constant")
