"""A quantization recipe: the NNCF knobs edgeq exposes, as one validated, serialisable dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeq.errors import InvalidArgument
from edgeq.quantization.rules import DEFAULT_RULES, parse_rules

PRESETS = ("performance", "mixed")
RANGE_ESTIMATORS = ("default", "minmax", "mean_minmax", "histogram")


@dataclass(frozen=True)
class Recipe:
    preset: str = "performance"
    transformer: bool = True  # NNCF ModelType.TRANSFORMER: keeps MVN/Softmax/GELU/Add float, SmoothQuant
    rules: tuple[str, ...] = field(default=DEFAULT_RULES)
    subset_size: int = 300
    smooth_quant_alpha: float | None = None  # None: NNCF's default; < 0: SmoothQuant off
    fast_bias_correction: bool = True
    activations_range: str = "default"
    per_channel_activations: bool = False  # one activation scale per channel, where the target supports it

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise InvalidArgument(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if not 1 <= self.subset_size <= 100_000:
            raise InvalidArgument(f"subset size must be 1..100000, got {self.subset_size}")
        if self.smooth_quant_alpha is not None and self.smooth_quant_alpha > 1:
            raise InvalidArgument(f"SmoothQuant alpha must be <= 1 (negative turns it off), got {self.smooth_quant_alpha}")
        if self.activations_range not in RANGE_ESTIMATORS:
            raise InvalidArgument(f"activation range estimator must be one of {RANGE_ESTIMATORS}")
        parse_rules(list(self.rules))  # validates every rule text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rules"] = list(self.rules)
        return data
