"""One quantization job from import to publish, emitting progress events.

import → data → float reference (true FP32) → [recipe search] → [precision plan per layer group] → PTQ with ignored-scope rules → accuracy
→ [accuracy-aware fallback: re-quantization, then accuracy control in a child process] → analysis (SQNR,
attention maps) → speed → report → publish; the stages themselves are in edgeq.quantization.stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from edgeq import __version__
from edgeq.options import QuantizeOptions
from edgeq.quantization.accuracy import Budget
from edgeq.quantization.events import EventSink, ignore
from edgeq.quantization.fallback import FallbackSettings
from edgeq.quantization.recipe import Recipe
from edgeq.quantization.speed import SpeedSettings
from edgeq.report.model import Report
from edgeq.sources.spec import Preprocess

@dataclass
class QuantizeRequest:
    """Where one job reads from and publishes to, and its options (declared in edgeq.options).

    Budget, Recipe, fallback and speed settings are derived here from the options; the stages
    read the rest from `options` as they are; none is declared a second time."""

    model: str
    calibration: str | Path
    store: str | Path
    name: str
    weights: str | Path | None = None
    validation: str | Path | None = None
    options: QuantizeOptions = field(default_factory=QuantizeOptions)
    search_workers: int | None = None  # parallel --auto candidates; None: one per core (the machine's, not the job's)
    job_id: str | None = None  # the job running this request: named in the version's manifest (recovery reads it)

    def __post_init__(self) -> None:
        from edgeq.names import check_model_name

        check_model_name(self.name)

    @property
    def budget(self) -> Budget:
        return Budget(self.options.max_drop, self.options.relative)

    @cached_property
    def recipe(self) -> Recipe:
        o = self.options
        return Recipe(preset=o.preset, transformer=not o.no_transformer,
                      rules=Recipe().rules if o.rules is None else o.rules, subset_size=o.subset_size,
                      smooth_quant_alpha=o.smooth_quant_alpha, activations_range=o.activations_range)

    @property
    def fallback(self) -> FallbackSettings | None:
        o = self.options
        return None if o.no_fallback else FallbackSettings(o.time_budget, o.max_iterations, o.ranking_subset)

    @property
    def speed(self) -> SpeedSettings | None:
        o = self.options
        return SpeedSettings(o.batch_sizes, o.speed_seconds, o.speed_rounds) if o.speed_seconds > 0 else None

    @property
    def preprocess(self) -> Preprocess | None:
        o = self.options
        if o.image_size is None:
            return None
        return Preprocess(size=o.image_size, channels=o.channels, mean=o.mean or (0.0,) * o.channels,
                          std=o.std or (1.0,) * o.channels)


@dataclass
class QuantizeResult:
    name: str
    version: int
    path: Path
    report: Report

    @property
    def budget_met(self) -> bool:
        return self.report.accuracy.met

    @property
    def served(self) -> bool:
        """False when the speed gate held this version back (stored, reported, not served)."""
        gate = self.report.speed_gate
        return not gate or gate.served


def run(request: QuantizeRequest, on_event: EventSink = ignore,
        cancelled: Callable[[], bool] = lambda: False) -> QuantizeResult:
    """Run one job; raise an EdgeqError on bad input, return a result (budget met or not) otherwise.

    The stages run in this order, each over the one context and each returning its report section
    (edgeq.quantization.stages): the calls spell the pipeline out and let the type checker follow it.
    """
    from edgeq.quantization import stages

    ctx = stages.Context.start(request, on_event, cancelled)
    try:
        model, data = stages.load(ctx), stages.read_data(ctx)
        stages.reference(ctx)
        search = stages.search(ctx)
        plan = stages.plan(ctx)
        rules = stages.quantize(ctx)
        fallback = stages.restore_accuracy(ctx)
        layers = stages.analyse(ctx)
        speed, speed_gate = stages.speed(ctx)
        size = stages.save(ctx)
        report = Report(__version__, datetime.now(timezone.utc).isoformat(timespec="seconds"), model, data, ctx.recipe,
                        search, rules, stages.score(ctx), fallback, layers, size, speed, speed_gate, ctx.cpu,
                        stages.timings(ctx), ctx.warnings, plan)
        info = stages.publish(ctx, report)
        return QuantizeResult(request.name, info.version, info.path, report)
    finally:
        ctx.close()
