"""Accuracy-aware fallback: NNCF's `quantize_with_accuracy_control`, run in a child process.

Accuracy control is slow and has crashed NNCF/OpenVINO on 2 cores, so it runs in a spawned child
with a time budget. The child gets everything through files in a work directory (float IR,
calibration and validation arrays as .npy, the float reference outputs, parameters as JSON) and
writes the result IR plus a JSON of timings. A crash or a timeout of the child is an outcome we
report, never a crash of the caller. Which layers were reverted: NNCF only logs it, so we diff
the quantized-op sets of the plain PTQ model and the final model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeq.errors import Cancelled, InternalError
from edgeq.quantization import accuracy, nncf_adapter
from edgeq.quantization.isolated import Task, run_tasks
from edgeq.quantization.recipe import Recipe


@dataclass
class FallbackSettings:
    time_budget_s: float = 600.0
    max_iterations: int = 30
    ranking_subset_size: int | None = None


@dataclass
class FallbackOutcome:
    status: str  # "done" | "timeout" | "crashed"
    model_path: Path | None
    seconds: float
    reason: str = ""
    timings: dict[str, Any] = field(default_factory=dict)


def _child(workdir: str) -> None:
    """Runs in the spawned process (isolated.run_tasks): no state shared with the parent but the files."""
    root = Path(workdir)
    params = json.loads((root / "params.json").read_text())
    calibration = np.load(root / "calibration.npy", mmap_mode="r")
    validation = np.load(root / "validation.npy", mmap_mode="r")
    reference = np.load(root / "reference.npy")
    labels = np.load(root / "labels.npy") if (root / "labels.npy").exists() else None
    metric = params["metric"]
    timings = {"evaluations": 0, "evaluation_s": 0.0}

    def validate(compiled: Any, indices: Any) -> tuple[float, list[float]]:
        started = time.perf_counter()
        chosen = np.fromiter((int(i) for i in indices), dtype=np.int64)
        # Synchronous, batched: an AsyncInferQueue inside NNCF's evaluator deadlocks (seen with NNCF 3.4).
        outputs = np.concatenate([compiled(np.ascontiguousarray(validation[chosen[i:i + 32]]))[0]
                                  for i in range(0, len(chosen), 32)])
        scores = accuracy.per_sample(metric, outputs, reference[chosen], None if labels is None else labels[chosen])
        timings["evaluations"] += 1
        timings["evaluation_s"] += time.perf_counter() - started
        return float(scores.mean()), scores.tolist()

    started = time.perf_counter()
    model = ov.Core().read_model(str(root / "float.xml"))
    result = nncf_adapter.quantize_with_accuracy_control(
        model, [calibration[i] for i in range(len(calibration))], list(range(len(validation))), validate,
        Recipe.from_dict(params["recipe"]), params["ignored"], max_drop=params["max_drop"], relative=params["relative"],
        max_iterations=params["max_iterations"], ranking_subset_size=params["ranking_subset_size"])
    ov.save_model(result, str(root / "result.xml"), compress_to_fp16=False)
    timings["total_s"] = time.perf_counter() - started
    timings["other_s"] = timings["total_s"] - timings["evaluation_s"]
    (root / "timings.json").write_text(json.dumps(timings))


def prepare(workdir: Path, float_model: Any, calibration: np.ndarray, validation: np.ndarray, reference: np.ndarray,
            labels: np.ndarray | None, params: dict[str, Any]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    ov.save_model(float_model, str(workdir / "float.xml"), compress_to_fp16=False)
    np.save(workdir / "calibration.npy", calibration)
    np.save(workdir / "validation.npy", validation)
    np.save(workdir / "reference.npy", reference)
    if labels is not None:
        np.save(workdir / "labels.npy", labels)
    (workdir / "params.json").write_text(json.dumps(params))


def run_in_child(workdir: Path, settings: FallbackSettings, cancelled: Any = None) -> FallbackOutcome:
    """Run the child once (no retry: it is slow) within the time budget; report what happened."""
    task = Task("accuracy-control", _child, (str(workdir),), str(workdir))
    try:
        (outcome,) = run_tasks([task], time_budget_s=settings.time_budget_s, retries=0,
                               cancelled=cancelled or (lambda: False))
    except Cancelled:
        raise Cancelled("the job was cancelled during accuracy control") from None
    if outcome.status == "timeout":
        return FallbackOutcome("timeout", None, outcome.seconds,
                               f"accuracy control did not finish within its time budget of {settings.time_budget_s:.0f} s")
    if not outcome.ok:
        return FallbackOutcome("crashed", None, outcome.seconds, f"accuracy control crashed ({outcome.reason})")
    result = workdir / "result.xml"
    if not result.exists():
        raise InternalError("accuracy control finished without writing its result")
    timings = json.loads((workdir / "timings.json").read_text())
    return FallbackOutcome("done", result, outcome.seconds, timings=timings)


def reverted_layers(plain_quantized: set[str], final_quantized: set[str]) -> list[str]:
    """Ops that had quantizers after plain PTQ and have none in the final model."""
    return sorted(plain_quantized - final_quantized)
