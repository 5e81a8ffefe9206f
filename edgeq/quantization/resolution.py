"""Can this validation set tell whether a budget is met? Decided before the fallback spends its time.

top-1 and agreement are counts: on N validation samples they move in steps of 1/N. When one step
is larger than a non-zero budget (16 held-out samples: 6.25 % steps against a 1 % budget), the
budget silently means "not one sample may change", which the fallback then chases for minutes on a
number too coarse to show progress. edgeq skips the fallback there, says so, and names the fix (more
validation samples, or a budget of at least one step). A budget of exactly 0 is taken at its word;
cosine is continuous and always measurable.
"""

from __future__ import annotations

import math

from edgeq.quantization.accuracy import Budget

COUNTED_METRICS = ("top1", "agreement")


def unmeasurable_budget(budget: Budget, metric: str, validation_count: int, reference_score: float) -> str | None:
    """Why the fallback cannot resolve `budget` with `validation_count` samples, or None when it can."""
    if metric not in COUNTED_METRICS or budget.max_drop == 0 or validation_count <= 0:
        return None
    scale = reference_score if budget.relative else 1.0  # a relative drop divides by the float score
    if scale <= 0:
        return None
    step = 1.0 / (validation_count * scale)
    if step <= budget.max_drop * (1 + 1e-9):
        return None
    needed = math.ceil(1.0 / (budget.max_drop * scale) - 1e-9)
    return (f"accuracy fallback skipped: {validation_count} validation samples move {metric} in steps of "
            f"{step:.2%}, coarser than the {budget.max_drop:.2%} budget, so no fallback could show it met; "
            f"give --validation with at least {needed} samples (or more calibration samples: a share is held out), "
            f"or --max-drop {step:.4g} or more")
