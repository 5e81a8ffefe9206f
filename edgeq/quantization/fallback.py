"""Accuracy-aware fallback: NNCF's `quantize_with_accuracy_control`, run in a child process.

Accuracy control is slow and has crashed NNCF/OpenVINO on 2 cores, so it runs in a spawned child
with a time budget. The child gets its parameters (`ControlRequest`) as its task's argument and the
data through files: the job's float IR and calibration and validation arrays (.npy, read where the
job wrote them) and the float reference outputs in its own directory, where it writes the result IR
plus a JSON of timings. A crash
or a timeout of the child is an outcome we report, never a crash of the caller. Which layers were
reverted: NNCF only logs it, so we diff the quantized-op sets of the plain PTQ model and the final model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeq.data import feed
from edgeq.errors import Cancelled, InternalError
from edgeq.quantization import accuracy, nncf_adapter
from edgeq.quantization.isolated import Task, run_tasks
from edgeq.quantization.recipe import Recipe
from edgeq.report.model import AccuracyControl


@dataclass
class FallbackSettings:
    time_budget_s: float = 600.0
    max_iterations: int = 30
    ranking_subset_size: int | None = None


@dataclass(frozen=True)
class ControlRequest:
    """What the child runs accuracy control with (handed to it pickled, as its task's argument)."""

    inputs: str  # the job's work folder: float.xml, calibration.npy, validation.npy
    metric: str
    recipe: Recipe
    ignored: list[str]
    max_drop: float
    relative: bool
    max_iterations: int
    ranking_subset_size: int | None


def _child(workdir: str, params: ControlRequest) -> None:
    """Runs in the spawned process (isolated.run_tasks): no state shared with the parent but the files."""
    root, inputs, metric = Path(workdir), Path(params.inputs), params.metric
    calibration = np.load(inputs / "calibration.npy", mmap_mode="r")
    validation = np.load(inputs / "validation.npy", mmap_mode="r")
    reference = np.load(root / "reference.npy")
    labels = np.load(root / "labels.npy") if (root / "labels.npy").exists() else None
    timings = {"evaluations": 0, "evaluation_s": 0.0}

    def validate(compiled: Any, indices: Any) -> tuple[float, list[float]]:
        started = time.perf_counter()
        chosen = np.fromiter((int(i) for i in indices), dtype=np.int64)
        # Synchronous, batched: an AsyncInferQueue inside NNCF's evaluator deadlocks (seen with NNCF 3.4).
        outputs = np.concatenate([compiled(feed.batch(validation[chosen[i:i + 32]]))[0]
                                  for i in range(0, len(chosen), 32)])
        scores = accuracy.per_sample(metric, outputs, reference[chosen], None if labels is None else labels[chosen])
        timings["evaluations"] += 1
        timings["evaluation_s"] += time.perf_counter() - started
        return float(scores.mean()), scores.tolist()

    started = time.perf_counter()
    model = ov.Core().read_model(str(inputs / "float.xml"))
    result = nncf_adapter.quantize_with_accuracy_control(
        model, [calibration[i] for i in range(len(calibration))], list(range(len(validation))), validate,
        params.recipe, params.ignored, max_drop=params.max_drop, relative=params.relative,
        max_iterations=params.max_iterations, ranking_subset_size=params.ranking_subset_size)
    ov.save_model(result, str(root / "result.xml"), compress_to_fp16=False)
    timings["total_s"] = time.perf_counter() - started
    timings["other_s"] = timings["total_s"] - timings["evaluation_s"]
    (root / "timings.json").write_text(json.dumps(timings))


def run_in_child(workdir: Path, params: ControlRequest, reference: np.ndarray, labels: np.ndarray | None,
                 settings: FallbackSettings, cancelled: Any = None) -> tuple[AccuracyControl, Path | None]:
    """Run the child once (no retry: it is slow) within the time budget: what happened, and the model it wrote.
    The reference outputs and labels are saved for it; the job's own files are read where they are."""
    workdir.mkdir(parents=True, exist_ok=True)
    np.save(workdir / "reference.npy", reference)
    if labels is not None:
        np.save(workdir / "labels.npy", labels)
    task = Task("accuracy-control", _child, (str(workdir), params), str(workdir))
    try:
        (outcome,) = run_tasks([task], time_budget_s=settings.time_budget_s, retries=0,
                               cancelled=cancelled or (lambda: False))
    except Cancelled:
        raise Cancelled("the job was cancelled during accuracy control") from None
    seconds = round(outcome.seconds, 2)
    if outcome.status == "timeout":
        return AccuracyControl("timeout", f"accuracy control did not finish within its time budget of "
                                          f"{settings.time_budget_s:.0f} s", seconds, {}), None
    if not outcome.ok:
        return AccuracyControl("crashed", f"accuracy control crashed ({outcome.reason})", seconds, {}), None
    result = workdir / "result.xml"
    if not result.exists():
        raise InternalError("accuracy control finished without writing its result")
    return AccuracyControl("done", "", seconds, json.loads((workdir / "timings.json").read_text())), result


def reverted_layers(plain_quantized: set[str], final_quantized: set[str]) -> list[str]:
    """Ops that had quantizers after plain PTQ and have none in the final model."""
    return sorted(plain_quantized - final_quantized)
