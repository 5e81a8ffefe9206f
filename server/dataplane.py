"""What the KServe v2 inference protocol answers, computed once for both front doors.

The gRPC servicer (`edgeq_server.inference`) and the HTTP routes (`edgeq_server.http`) are thin
over these functions. Answers are plain dicts in the protocol's JSON form (the REST body as
KServe v2 / Triton write it; the gRPC side parses the same dict into its message), so a field is
named and computed in one place. Inference takes and returns numpy arrays: each front door only
decodes its own wire format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import edgeq
from edgeq.errors import FailedPrecondition, InvalidArgument, NotFound
from edgeq.runtime.memory import Reservation
from edgeq.runtime.registry import LoadedVersion, ModelRegistry, TensorSpec
from edgeq.runtime.stats import Duration

EXTENSIONS = ["model_repository", "model_configuration", "statistics", "binary_tensor_data"]
PLATFORM = "openvino_ir"
SERVER_NAME = "edgeq"


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": edgeq.__version__, "extensions": list(EXTENSIONS)}


def model_ready(registry: ModelRegistry, name: str, version: str = "") -> bool:
    try:
        registry.get(name, version)
    except (NotFound, FailedPrecondition):  # unknown, not loaded, or held back by the speed gate
        return False
    return True


def _tensors(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]


def model_metadata(registry: ModelRegistry, name: str, version: str = "") -> dict[str, Any]:
    target = registry.get(name, version)
    versions = sorted(registry.loaded.get(name, {}))
    return {"name": target.name, "versions": [str(v) for v in versions], "platform": PLATFORM,
            "inputs": _tensors(target.inputs), "outputs": _tensors(target.outputs)}


def model_config(registry: ModelRegistry, name: str, version: str = "") -> dict[str, Any]:
    """Triton's ModelConfig (what perf_analyzer reads: name, max_batch_size, inputs and outputs)."""
    target = registry.get(name, version)
    config = registry.config
    answer: dict[str, Any] = {
        "name": target.name, "platform": PLATFORM, "backend": "openvino", "max_batch_size": config.max_batch_size,
        "version_policy": {"latest": {"num_versions": config.keep_versions}},
        "parameters": {key: {"string_value": value} for key, value in target.properties.items()},
        "input": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": list(s.shape[1:])}
                  for s in target.inputs],
        "output": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": list(s.shape[1:])}
                   for s in target.outputs],
    }
    if config.batching.merges:  # Triton's field for what the engine does: merging callers, and how long they wait
        answer["dynamic_batching"] = {"preferred_batch_size": list(config.batching.preferred_sizes),
                                      "max_queue_delay_microseconds": config.batching.delay_us}
    return answer


def _duration(d: Duration, with_time: bool = True) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns if with_time else 0}


def _version_statistics(target: LoadedVersion) -> dict[str, Any]:
    s = target.stats
    return {
        "name": target.name, "version": str(target.version), "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count, "execution_count": s.execution_count,
        "inference_stats": {
            "success": _duration(s.success), "fail": _duration(s.fail), "queue": _duration(s.queue),
            "compute_input": _duration(s.compute_infer, False), "compute_infer": _duration(s.compute_infer),
            "compute_output": _duration(s.compute_infer, False)},
        "batch_stats": [{"batch_size": rows, "compute_input": {"count": d.count, "ns": 0},
                         "compute_infer": _duration(d), "compute_output": {"count": d.count, "ns": 0}}
                        for rows, d in sorted(s.batches.items())],
    }


def model_statistics(registry: ModelRegistry, name: str = "", version: str = "") -> dict[str, Any]:
    """Statistics of one version, every loaded version of a model, or (no name) every loaded version."""
    if name:
        targets = [registry.get(name, version)] if version else list(registry.loaded.get(name, {}).values())
        if not targets:
            registry.get(name)  # raises NotFound with a helpful message
    else:
        targets = registry.all_loaded()
    return {"model_stats": [_version_statistics(t) for t in targets]}


def repository_index(registry: ModelRegistry, ready_only: bool = False) -> list[dict[str, str]]:
    models = []
    for name in registry.store.names():
        loaded = registry.loaded.get(name, {})
        for info in registry.store.versions(name):
            state = "READY" if info.version in loaded else \
                "LOADING" if registry.is_loading(name, info.version) else "UNAVAILABLE"
            if ready_only and state != "READY":
                continue
            held = info.held()
            reason = f"held back: {held}" if held else "unloaded by request" \
                if name in registry.unloaded_by_user else \
                ("" if state == "READY" else "older than the versions kept loaded")
            models.append({"name": name, "version": str(info.version), "state": state, "reason": reason})
    return models


@dataclass
class InferAnswer:
    """The version that answered and the outputs asked for, in the order asked (all, in model order, if none)."""

    target: LoadedVersion
    names: list[str]
    datatypes: list[str]
    arrays: list[np.ndarray]


async def infer(registry: ModelRegistry, name: str, version: str, arrays: dict[str, np.ndarray],
                wanted: Sequence[str] = (), reservation: Reservation | None = None) -> InferAnswer:
    target = registry.get(name, version)
    if not arrays:
        raise InvalidArgument("the request has no inputs")
    outputs = await registry.infer(target, arrays, reservation)
    names = [s.name for s in target.outputs]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise InvalidArgument(f"model {target.name!r} has no output(s) {unknown}; its outputs are {names}")
    order = [names.index(n) for n in wanted] if wanted else range(len(names))
    return InferAnswer(target, [names[i] for i in order], [target.outputs[i].datatype for i in order],
                       [outputs[i] for i in order])
