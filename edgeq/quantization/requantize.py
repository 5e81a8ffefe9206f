"""The first fallback: re-quantize with the least accurate layers kept in float, fewest first.

NNCF's accuracy control removes quantizers from a finished INT8 model. On MiniLM that made cosine
worse (0.998 -> 0.91 after 19 reverts): the bias corrections of the layers around a reverted one
were computed for its quantized output and stay in place. Running PTQ again with those layers in
the ignored scope recomputes everything around them. Layers are ranked by their SQNR in the plain
PTQ model (worst first) and reverted in growing groups (1, 2, 4, ... up to `max_layers`), each
group one NNCF run in a child process, until the budget is met; the best model seen is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.quantization import ptq
from edgeq.quantization.recipe import Recipe


@dataclass
class RequantizeOutcome:
    model: Any | None
    score: float | None
    outputs: Any = None  # the best model's validation outputs
    reverted: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    sqnr: dict[str, float] = field(default_factory=dict)  # the ranking: plain PTQ SQNR per layer (dB)


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
    # The ignored scope does not change SmoothQuant: smooth once, quantize each group from there.
    smoothed = ptq.shared_smoothing(work / "smoothing", float_xml, calibration_npy, recipe, cancelled)[0] \
        if len(sizes) > 1 else None
    for size in sizes:
        reverted = ranked_layers[:size]
        model = ptq.quantize_isolated(work / f"revert-{size}", float_xml, calibration_npy, recipe,
                                      sorted({*ignored, *reverted}), cancelled, smoothed_xml=smoothed)
        outputs, value = score(model)
        best.steps.append({"reverted": size, "score": value})
        if best.score is None or value > best.score:
            best.model, best.outputs, best.score, best.reverted = model, outputs, value, list(reverted)
        if good_enough(value):
            break
    return best
