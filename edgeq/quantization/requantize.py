"""The first fallback: re-quantize with the least accurate layers kept in float, fewest first.

NNCF's accuracy control removes quantizers from a finished INT8 model. On MiniLM that made cosine
worse with every layer it reverted (docs/accuracy.md): the bias corrections of the layers around a
reverted one were computed for its quantized output and stay in place. Running PTQ again with those layers in
the ignored scope recomputes everything around them. Layers are ranked by their SQNR in the plain
PTQ model (worst first) and reverted in growing groups (1, 2, 4, ... up to `max_layers`), all
quantized in one child process from one statistics pass, then scored in that order until the
budget is met; the best model seen is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openvino as ov

from edgeq.quantization import ptq
from edgeq.quantization.isolated import run_tasks
from edgeq.quantization.recipe import Recipe
from edgeq.report.model import RequantizeStep


@dataclass
class RequantizeOutcome:
    model: Any | None
    score: float | None
    outputs: Any = None  # the best model's validation outputs
    reverted: list[str] = field(default_factory=list)
    steps: list[RequantizeStep] = field(default_factory=list)


def group_sizes(max_layers: int) -> list[int]:
    """1, 2, 4, ... and finally max_layers itself."""
    sizes, size = [], 1
    while size < max_layers:
        sizes.append(size)
        size *= 2
    return [*sizes, max_layers] if max_layers >= 1 else []


def requantize(work: Path, float_xml: Path, calibration_npy: Path, recipe: Recipe, ignored: list[str],
               ranked_layers: list[str], score: Callable[[Any], tuple[Any, float]], good_enough: Callable[[float], bool],
               max_layers: int, cancelled: Callable[[], bool] = lambda: False) -> RequantizeOutcome:
    best = RequantizeOutcome(None, None)
    sizes = group_sizes(min(max_layers, len(ranked_layers)))
    ignored_with = {size: sorted({*ignored, *ranked_layers[:size]}) for size in sizes}
    model_for = _quantized_models(work, float_xml, calibration_npy, recipe, ignored_with, cancelled)
    for size in sizes:
        model = model_for(size)
        outputs, value = score(model)
        best.steps.append(RequantizeStep(size, value))
        if best.score is None or value > best.score:
            best.model, best.outputs, best.score, best.reverted = model, outputs, value, list(ranked_layers[:size])
        if good_enough(value):
            break
    return best


def _quantized_models(work: Path, float_xml: Path, calibration_npy: Path, recipe: Recipe,
                      ignored_with: dict[int, list[str]], cancelled: Callable[[], bool]) -> Callable[[int], Any]:
    """size -> the model PTQ gives with that many layers reverted (each size is asked for once).

    The ignored scope changes neither SmoothQuant nor the range statistics: smooth once, then
    quantize every size from one statistics pass (`ptq.quantize_many`, a few seconds per extra
    size) where the recipe allows; otherwise one NNCF run per size, only when it is asked for.
    """
    def read(size: int) -> Any:
        return ov.Core().read_model(str(work / f"revert-{size}" / "int8.xml"))

    smoothed = None
    if len(ignored_with) > 1:
        irs, _ = ptq.shared_smoothing(work / "smoothing", float_xml, calibration_npy, [recipe], cancelled)
        smoothed = next(iter(irs.values()), None)  # the recipe's one smoothed IR, if it smooths
        if ptq.shares_statistics(ptq.from_smoothed(recipe) if smoothed else recipe):
            members = [(work / f"revert-{size}", recipe, names) for size, names in ignored_with.items()]
            task = ptq.many_task(work / "shared-statistics", "requantize", members, float_xml, calibration_npy, smoothed)
            (outcome,) = run_tasks([task], cancelled=cancelled)
            if outcome.ok:
                return read

    def quantize(size: int) -> Any:
        return ptq.quantize_isolated(work / f"revert-{size}", float_xml, calibration_npy, recipe, ignored_with[size],
                                     cancelled, smoothed_xml=smoothed)

    return quantize
