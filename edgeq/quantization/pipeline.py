"""One quantization job from import to publish, emitting progress events.

import → data → float reference (true FP32) → [recipe search] → PTQ with ignored-scope rules → accuracy
→ [accuracy-aware fallback: re-quantization, then accuracy control in a child process] → analysis (SQNR,
attention maps) → speed → report → publish; the stages themselves are in edgeq.quantization.stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from edgeq import __version__
from edgeq._offline import disable_telemetry
from edgeq.errors import InvalidArgument
from edgeq.quantization.accuracy import METRICS, Budget
from edgeq.quantization.events import EventSink, ignore
from edgeq.quantization.fallback import FallbackSettings
from edgeq.quantization.recipe import Recipe
from edgeq.quantization.speed import SpeedSettings
from edgeq.report.model import Report
from edgeq.sources.spec import Preprocess

disable_telemetry()


@dataclass
class QuantizeRequest:
    """Everything one job needs; validated before any heavy work starts."""

    model: str
    calibration: str | Path
    store: str | Path
    name: str
    weights: str | Path | None = None
    validation: str | Path | None = None
    input_shape: tuple[int, ...] | None = None
    preprocess: Preprocess | None = None
    output_node: str | None = None
    metric: str = "agreement"
    budget: Budget = field(default_factory=Budget)
    recipe: Recipe = field(default_factory=Recipe)
    fallback: FallbackSettings | None = field(default_factory=FallbackSettings)
    holdout_fraction: float = 0.3
    validation_limit: int | None = 10_000
    sensitivity_samples: int = 8
    speed: SpeedSettings | None = field(default_factory=SpeedSettings)
    min_speedup: float | None = 1.1  # speed gate vs the default float model; None: no gate
    force_promote: bool = False  # serve the version even if it misses the speed gate
    search_workers: int | None = None  # parallel --auto candidates; None: one per core
    auto: bool = False  # try a few recipes on a ranking subset and keep the best (edgeq.quantization.search)
    ranking_samples: int = 300
    search_calibration: int = 100  # --auto's first round: calibration samples per candidate

    def __post_init__(self) -> None:
        from edgeq.names import check_model_name

        check_model_name(self.name)
        if self.metric not in METRICS:
            raise InvalidArgument(f"metric must be one of {METRICS}, got {self.metric!r}")
        if not 0.05 <= self.holdout_fraction <= 0.5:
            raise InvalidArgument(f"hold-out fraction must be in [0.05, 0.5], got {self.holdout_fraction}")
        if self.validation_limit is not None and self.validation_limit < 1:
            raise InvalidArgument("validation limit must be positive")
        if self.search_calibration < 1:
            raise InvalidArgument(f"search calibration must be at least 1 sample, got {self.search_calibration}")


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
        rules = stages.quantize(ctx)
        fallback = stages.restore_accuracy(ctx)
        layers = stages.analyse(ctx)
        speed, speed_gate = stages.speed(ctx)
        size = stages.save(ctx)
        report = Report(__version__, datetime.now(timezone.utc).isoformat(timespec="seconds"), model, data, ctx.recipe,
                        search, rules, stages.score(ctx), fallback, layers, size, speed, speed_gate, ctx.cpu,
                        stages.timings(ctx), ctx.warnings)
        info = stages.publish(ctx, report)
        return QuantizeResult(request.name, info.version, info.path, report)
    finally:
        ctx.close()
