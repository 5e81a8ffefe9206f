"""The report of one quantization job as typed sections; `Report.to_dict()` is what `edgeq.json` holds.

Every change to these dataclasses changes `edgeq.schema.json` (regenerate it with
`python -m edgeq.report.schema`); a change a reader of an older report would notice bumps
SCHEMA_VERSION. Field names are the JSON keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgeq.quantization.accuracy import Budget
from edgeq.quantization.recipe import Recipe
from edgeq.sources.spec import InputSpec, Preprocess

SCHEMA_VERSION = 2  # 1 was "format": "edgeq-report/1", before the schema was published
Score = float  # a metric's value (AccuracySection has a field named float)


@dataclass
class ModelSection:
    name: str
    source: str
    input: InputSpec
    output: str
    preprocess: Preprocess | None
    notes: list[str]
    inputs: list[InputSpec] = field(default_factory=list)  # every input (`input` is the first); -1: dynamic


@dataclass
class CalibrationData:
    path: str
    samples: int  # in the set
    used: int  # the first `subset_size` of them calibrate


@dataclass
class ValidationData:
    path: str | None  # None: held out from the calibration set
    samples: int
    held_out_from_calibration: bool
    labelled: bool


@dataclass
class DataSection:
    calibration: CalibrationData
    validation: ValidationData


@dataclass
class SearchRow:
    """One recipe candidate in one round of `--auto` (edgeq.quantization.search)."""

    candidate: str
    round: int
    calibration: int  # calibration samples it was quantized on
    changes: dict[str, Any]  # the knobs it changes from the base recipe
    seconds: float
    score: float | None  # None: skipped, failed or stopped as too slow (see skipped/error)
    ranked_on: int | None = None
    cosine: float | None = None
    skipped: str | None = None
    error: str | None = None
    quantize_s: float | None = None
    score_s: float | None = None
    shared_smoothquant_s: float | None = None
    shared_statistics: dict[str, Any] | None = None  # with (the others), task_s, pass_s, own_step_s
    shared_statistics_failed: str | None = None
    chosen: bool = False


@dataclass
class GroupGain:
    """What INT8 on one layer group gives on this CPU (`--plan`): the all-INT8 plan against the same
    plan with only this group in float, timed in one alternating run."""

    group: str
    layers: int
    int8_speedup: float  # all-INT8 throughput / throughput with this group in float (> 1: INT8 here pays)
    score_in_float: float  # the score with this group in float, every other group in INT8
    score_recovered: float  # score_in_float minus the all-INT8 score: what INT8 on this group costs


FLOAT_DEFAULT = "float default"  # the PlanRow of the float model itself, at the CPU's default precision


@dataclass
class PlanRow:
    """One precision plan tried: which layer groups stay in float, its speed and accuracy."""

    plan: str  # "float default", "all INT8", "float: qkv+fc2", ...
    float_groups: list[str]
    int8_groups: list[str]
    throughput: float  # inferences/s, batch `PlanSection.batch_size`, THROUGHPUT hint
    speedup_vs_default: float  # against the float model at the CPU's default precision, same run
    score: float
    drop: float
    within_budget: bool
    on_front: bool = False  # no other plan tried is both faster and more accurate
    chosen: bool = False


@dataclass
class PlanSection:
    """`--plan`: the precision plans tried on this CPU, their speed/accuracy front and the choice."""

    groups: list[GroupGain]
    fixed_float: list[str]  # the recipe's rules: kept in float in every plan
    plans: list[PlanRow]  # the float default first
    float_default_precision: str  # what a group "in float" runs in (the CPU plugin's default)
    chosen: str
    beats_float: bool
    reason: str
    ranked_on: int  # validation samples each plan was scored on
    batch_size: int
    rounds: int
    seconds_per_round: float
    fp32_per_group: str  # why a group's float is the CPU's default float, not FP32


@dataclass
class RuleRow:
    """One ignored-scope rule and the nodes it kept in float."""

    rule: str
    reason: str
    matched: int
    nodes: list[str]
    note: str


@dataclass
class AccuracySection:
    metric: str
    float: Score  # the float model's score at true FP32
    int8_ptq: Score
    final: Score
    drop: Score
    ptq_drop: Score
    budget: Budget
    met: bool
    verdict: str
    float_precision: str = "f32"
    agreement: Score | None = None  # top-1 agreement with float (None for outputs without classes)
    cosine: Score | None = None
    neighbour_agreement: Score | None = None  # embeddings (metric cosine): accuracy.neighbours
    neighbour_in_float_top2: Score | None = None
    neighbour_changes_at_near_ties: Score | None = None


@dataclass
class RequantizeStep:
    reverted: int  # lowest-SQNR layers kept in float
    score: float


@dataclass
class AccuracyControl:
    status: str  # "done" | "timeout" | "crashed"
    reason: str
    seconds: float
    timings: dict[str, float]
    score: float | None = None


@dataclass
class RevertedLayer:
    layer: str
    type: str
    plain_ptq_sqnr_db: float | None
    reason: str


@dataclass
class FallbackSection:
    ran: bool
    # "not needed" | "disabled" | "skipped" | "not improved" | "requantized" | "accuracy control"
    status: str
    reverted: list[RevertedLayer] = field(default_factory=list)
    requantize: list[RequantizeStep] | None = None
    accuracy_control: AccuracyControl | None = None
    reason: str | None = None  # why the fallback was skipped (a budget the validation set cannot measure)


@dataclass
class LayersSection:
    quantizable: int
    quantized: int
    reverted: int
    sqnr_db: dict[str, float | str]  # worst first; "inf"/"-inf" where the error or the signal is zero
    # Spearman correlation of attention rows, INT8 vs FP32, per Softmax (unfused attention only), lowest first
    attention_rank_correlation: dict[str, float]


@dataclass
class SizeSection:
    float_bytes: int
    int8_bytes: int
    ratio: float


@dataclass
class SpeedRow:
    int8_throughput: float
    fp32_throughput: float
    float_default_throughput: float
    int8_latency_ms: float
    fp32_latency_ms: float
    float_default_latency_ms: float
    speedup_vs_fp32: float
    speedup_vs_default: float


@dataclass
class SpeedSection:
    batches: dict[str, SpeedRow]  # by batch size
    float_default_precision: str
    rounds: int
    seconds_per_round: float


@dataclass
class SpeedGate:
    min_speedup: float
    speedup_vs_default: float
    met: bool
    forced: bool
    served: bool
    reason: str | None = None  # why the version is held when the measured speed-up is not the reason (`--plan`)


@dataclass
class CpuSection:
    name: str
    capabilities: list[str]
    default_inference_precision: str
    isa_flags: list[str]
    openvino: str


@dataclass
class Report:
    """Everything one job measured and decided, in the order `edgeq.json` lists it."""

    edgeq_version: str
    created: str
    model: ModelSection
    data: DataSection
    recipe: Recipe
    search: list[SearchRow] | None
    rules: list[RuleRow]
    accuracy: AccuracySection
    fallback: FallbackSection
    layers: LayersSection
    size: SizeSection
    speed: SpeedSection | None
    speed_gate: SpeedGate | None
    cpu: CpuSection
    timings_s: dict[str, float]
    warnings: list[str]
    plan: PlanSection | None = None  # `--plan` only
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """An edgeq.json read back (job recovery reads it from the store); ValueError if it is not
        a report of this schema version."""
        from pydantic import TypeAdapter

        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"report schema version {data.get('schema_version')!r}, not {SCHEMA_VERSION}")
        return TypeAdapter(cls).validate_python(data)

    @classmethod
    def read(cls, data: dict[str, Any]) -> Report | None:
        """`from_dict`, or None where a version has no report of this schema (listings show the rest)."""
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError):
            return None
