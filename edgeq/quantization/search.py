"""`--auto`: try a small, bounded set of recipes, rank them on a subset, keep the best.

Candidates differ in one knob each from the base recipe: SmoothQuant off, attention inputs kept in
float, a different activation range estimator, full bias correction. Each is quantized with NNCF
and scored against the cached FP32 outputs on the ranking subset; the best model is kept, so the
winner is not quantized twice. Accuracy control (if still needed) runs only on the winner.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from edgeq.compile import compile_cpu
from edgeq.quantization import accuracy, ptq, rules
from edgeq.quantization.recipe import Recipe

CANDIDATES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("base", {}),
    ("smoothquant-off", {"smooth_quant_alpha": -1.0}),
    ("attention-float", {"rules_extra": ("attention",)}),
    ("range-mean-minmax", {"activations_range": "mean_minmax"}),
    ("full-bias-correction", {"fast_bias_correction": False}),
)


def _variant(base: Recipe, overrides: dict[str, Any]) -> Recipe:
    changes = dict(overrides)
    extra = changes.pop("rules_extra", ())
    if extra:
        changes["rules"] = tuple(dict.fromkeys((*base.rules, *extra)))
    return dataclasses.replace(base, **changes)


def search(float_model: Any, calibration: np.ndarray, ranking_inputs: np.ndarray, reference: np.ndarray,
           labels: np.ndarray | None, metric: str, base: Recipe) -> tuple[Recipe, Any, list[dict[str, Any]]]:
    """Return (best recipe, its INT8 model, one row per candidate)."""
    table: list[dict[str, Any]] = []
    best: tuple[float, Recipe, Any] | None = None
    for name, overrides in CANDIDATES:
        recipe = _variant(base, overrides)
        if recipe == base and name != "base":
            continue
        started = time.perf_counter()
        matches = rules.resolve(float_model, rules.parse_rules(list(recipe.rules)))
        model = ptq.quantize(float_model, calibration, recipe, rules.ignored_names(matches))
        outputs = accuracy.run(compile_cpu(model), ranking_inputs, len(ranking_inputs))
        score = float(accuracy.per_sample(metric, outputs, reference, labels).mean())
        table.append({"candidate": name, "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                      "score": score, "seconds": round(time.perf_counter() - started, 2)})
        if best is None or score > best[0] + 1e-12:
            best = (score, recipe, model)
    assert best is not None
    winner = next(row for row in table if row["score"] == best[0])
    winner["chosen"] = True
    return best[1], best[2], table
