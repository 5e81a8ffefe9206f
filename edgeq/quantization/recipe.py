"""A quantization recipe: the NNCF knobs edgeq exposes, as one serialisable dataclass.

Its values come checked: a job's recipe is derived from `edgeq.options.QuantizeOptions`, which
validates every knob (choices, ranges, rule texts) before a job starts; the recipe search only
varies it by fixed candidates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeq.quantization.rules import DEFAULT_RULES


@dataclass(frozen=True)
class Recipe:
    preset: str = "performance"  # or "mixed"
    transformer: bool = True  # NNCF ModelType.TRANSFORMER: keeps MVN/Softmax/GELU/Add float, SmoothQuant
    rules: tuple[str, ...] = field(default=DEFAULT_RULES)
    subset_size: int = 300
    smooth_quant_alpha: float | None = None  # None: NNCF's default; < 0: SmoothQuant off
    fast_bias_correction: bool = True
    activations_range: str = "default"  # or "minmax", "mean_minmax", "histogram"
    per_channel_activations: bool = False  # one activation scale per channel, where the target supports it

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rules"] = list(self.rules)
        return data
