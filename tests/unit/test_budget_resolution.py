"""A budget finer than one validation sample is called out before the fallback spends its time."""

from __future__ import annotations

from edgeq.quantization.accuracy import Budget, unmeasurable_budget


def test_sixteen_samples_cannot_measure_a_one_percent_budget() -> None:
    why = unmeasurable_budget(Budget(0.01), "agreement", 16, 1.0)
    assert why is not None
    assert "16 validation samples" in why and "6.25%" in why and "1.00% budget" in why
    assert "at least 100 samples" in why and "--max-drop 0.0625" in why


def test_measurable_budgets_pass() -> None:
    assert unmeasurable_budget(Budget(0.01), "agreement", 100, 1.0) is None  # one sample = exactly the budget
    assert unmeasurable_budget(Budget(0.01), "top1", 2000, 0.9) is None
    assert unmeasurable_budget(Budget(0.0625), "top1", 16, 0.9) is None
    assert unmeasurable_budget(Budget(0.0), "agreement", 16, 1.0) is None  # zero is taken at its word
    assert unmeasurable_budget(Budget(0.01), "cosine", 4, 1.0) is None  # continuous


def test_a_relative_budget_scales_with_the_float_score() -> None:
    # relative 1 % of a 0.5 top-1 is 0.5 points: 100 samples (1-point steps) are too few, 200 enough
    why = unmeasurable_budget(Budget(0.01, relative=True), "top1", 100, 0.5)
    assert why is not None and "at least 200 samples" in why
    assert unmeasurable_budget(Budget(0.01, relative=True), "top1", 200, 0.5) is None
