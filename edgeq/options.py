"""The options of one quantization job, declared once.

`QuantizeOptions` is the single declaration of every knob a job has: its name, type, default,
range and help. Everything else is derived from it, never re-declared:

- the `edgeq quantize` and `edgeq submit` flags (`edgeq.cli.flags`): `--name-with-dashes`, the
  help with its default, choices from `Literal` types;
- the `edgeq.v1.JobSpec` message (`edgeq_server.specs`): each field names its place on the wire
  (`proto`), numbers and strings are proto3 `optional` there, so "absent" means the default and
  zero is a value (`max_drop=0`, `min_speedup=0`);
- the jobs database (`edgeq.jobs.spec.JobSpec` stores `model_dump(mode="json")`);
- the pipeline request (`edgeq.quantization.pipeline.QuantizeRequest` holds the options and derives
  the Budget, Recipe, fallback and speed settings from them);
- the keyword parameters of `edgeq.quantize` (pinned to these fields by a test).

Why pydantic rather than dataclasses: the constraints a job needs checked before it is queued
(finite numbers, ranges, lengths, choices) are declarations on the fields, checked by a maintained
library that names the field of every violation, and the same field metadata carries the help,
the flag and the wire name. JSON in and out for the database comes with it. Constructing
`QuantizeOptions` with a bad value raises `edgeq.errors.InvalidArgument` naming the field.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgeq.errors import InvalidArgument

Metric = Literal["agreement", "top1", "cosine"]
Preset = Literal["performance", "mixed"]
RangeEstimator = Literal["default", "minmax", "mean_minmax", "histogram"]

MAX_DIMENSION = 1 << 16
MAX_SAMPLE_ELEMENTS = 1 << 24  # one sample of 64 MiB in float32
MAX_SAMPLES = 100_000
MAX_SECONDS = 24 * 3600.0


def option(default: Any, help: str, *, proto: str | None = None, flag: str | None = None, **constraints: Any) -> Any:
    """A field of QuantizeOptions: `proto` is its dotted path in edgeq.v1.JobSpec (default: its
    name), `flag` its command-line flag (default: --its-name)."""
    extra: dict[str, Any] = {k: v for k, v in (("proto", proto), ("flag", flag)) if v is not None}
    return Field(default, description=help, json_schema_extra=extra or None, **constraints)


Dimension = Annotated[int, Field(ge=1, le=MAX_DIMENSION)]
FiniteFloat = Annotated[float, Field(ge=-1e4, le=1e4)]
Scale = Annotated[float, Field(gt=0, le=1e4)]


class QuantizeOptions(BaseModel):
    """How to quantize one model (what to quantize and where to publish are the request's)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # the model's input
    input_shape: tuple[Dimension, ...] | None = option(
        None, "input shape without batch, e.g. 3,224,224 (default: the model's)", min_length=1, max_length=8)
    image_size: tuple[Dimension, Dimension] | None = option(
        None, "preprocessing size H,W for image archives", proto="preprocessing.size")
    mean: tuple[FiniteFloat, ...] | None = option(
        None, "per-channel mean, e.g. 0.485,0.456,0.406", proto="preprocessing.mean", min_length=1, max_length=3)
    std: tuple[Scale, ...] | None = option(
        None, "per-channel std", proto="preprocessing.std", min_length=1, max_length=3)
    output_node: str | None = option(
        None, "cut the graph here (e.g. backbone features)", min_length=1, max_length=1024)
    max_length: int | None = option(
        None, "tokens per sentence of .txt/.jsonl data, padded and truncated (default: 128); the model's "
              "sequence length stays dynamic", ge=1, le=MAX_DIMENSION)
    # accuracy
    metric: Metric = option("agreement", "accuracy metric against the float model")
    max_drop: float = option(0.01, "accuracy budget (0.005 = 0.5 points)", ge=0, lt=1)
    relative: bool = option(False, "--max-drop is relative to the float score", proto="relative_drop")
    validation_limit: int = option(10_000, "validation samples used at most", ge=1, le=1_000_000)
    holdout_fraction: float = option(
        0.3, "share of the calibration set held out for validation when there is no validation set", ge=0.05, le=0.5)
    # the recipe
    preset: Preset = option("performance", "NNCF quantization preset", proto="recipe.preset")
    rules: tuple[Annotated[str, Field(min_length=1, max_length=1024)], ...] | None = option(
        None, "ignored-scope rule (repeatable): layernorm, softmax, attention, head, patch-embed, qkv, proj, fc1, "
              "fc2, type:OP, name:REGEX, "
              "subgraph:IN->OUT; default: layernorm, softmax and attention", proto="recipe.rules", flag="--rule",
        max_length=256)  # () from Python: no rules (an empty repeated field on the wire is "unset")
    subset_size: int = option(300, "calibration samples", proto="recipe.subset_size", ge=1, le=MAX_SAMPLES)
    smooth_quant_alpha: float | None = option(
        None, "SmoothQuant alpha; negative turns it off (default: NNCF's)", proto="recipe.smooth_quant_alpha",
        ge=-1, le=1)
    activations_range: RangeEstimator = option(
        "default", "activation range estimator", proto="recipe.activations_range")
    no_transformer: bool = option(False, "do not use NNCF's transformer model type", proto="recipe.not_transformer")
    auto: bool = option(False, "try a few recipes on a ranking subset, keep the best")
    ranking_samples: int = option(300, "validation samples --auto and --plan rank candidates on", ge=1,
                                  le=MAX_SAMPLES)
    search_calibration: int = option(
        100, "--auto's first round: calibration samples per candidate (finalists get them all)", ge=1, le=MAX_SAMPLES)
    plan: bool = option(
        False, "choose per layer group (patch-embed, qkv, attention, proj, fc1, fc2, head) between INT8 and the "
               "CPU's default float by speed and accuracy measured on this CPU: the fastest plan within --max-drop "
               "(the version is held when no plan beats the float default)")
    # fallback when plain PTQ misses the budget
    no_fallback: bool = option(False, "never run the accuracy fallback")
    time_budget: float = option(
        600.0, "seconds for accuracy control", proto="time_budget_seconds", gt=0, le=MAX_SECONDS)
    max_iterations: int = option(30, "accuracy-control iterations cap", ge=1, le=1000)
    ranking_subset: int | None = option(
        None, "samples used to rank layers in accuracy control (default: NNCF's)", ge=1, le=MAX_SAMPLES)
    sensitivity_samples: int = option(8, "samples for per-layer SQNR", ge=1, le=1024)
    # speed and the speed gate
    speed_seconds: float = option(1.0, "seconds per speed round (0: skip the speed table)", ge=0, le=60)
    speed_rounds: int = option(3, "alternating speed rounds per variant", ge=1, le=20)
    batch_sizes: tuple[Annotated[int, Field(ge=1, le=256)], ...] = option(
        (1,), "batch sizes for the speed table, e.g. 1,8", min_length=1, max_length=8)
    min_speedup: float = option(
        1.1, "speed gate vs the default float model: a slower INT8 version is stored but not served (0: no gate)",
        ge=0, le=1000)
    force_promote: bool = option(False, "serve the version even if it misses the speed gate", flag="--force")
    # what the version carries
    no_float_ir: bool = option(
        False, "leave the float IR (FP16 weights) out of the version: an edge box importing it then serves INT8 "
               "without measuring which is faster on its CPU")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise InvalidArgument(describe(error)) from None

    @field_validator("rules")
    @classmethod
    def _rules_parse(cls, rules: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if rules is not None:
            from edgeq.quantization.rules import parse_rules

            try:
                parse_rules(list(rules))
            except InvalidArgument as error:
                raise ValueError(str(error)) from None
        return rules

    @field_validator("input_shape")
    @classmethod
    def _bounded_sample(cls, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is not None and math.prod(shape) > MAX_SAMPLE_ELEMENTS:
            raise ValueError(f"{list(shape)} has more than {MAX_SAMPLE_ELEMENTS} elements per sample")
        return shape

    @model_validator(mode="after")
    def _preprocessing(self) -> "QuantizeOptions":
        # InvalidArgument, not ValueError: pydantic would name no field for a model-level check
        if (self.mean or self.std) and self.image_size is None:
            raise InvalidArgument("invalid option image_size: H,W is needed with mean/std")
        if self.mean and self.std and len(self.mean) != len(self.std):
            raise InvalidArgument(f"invalid option std: {len(self.std)} values, mean has {len(self.mean)}")
        if self.plan and self.speed_seconds == 0:
            raise InvalidArgument("invalid option speed_seconds: --plan times its plans, give it seconds (not 0)")
        if self.channels not in (1, 3):
            raise InvalidArgument(f"invalid option {'mean' if self.mean else 'std'}: 1 or 3 values (image channels)")
        return self

    @property
    def channels(self) -> int:
        return len(self.mean or self.std or (0, 0, 0))


def describe(error: ValidationError) -> str:
    """The first violation of each field, naming it: 'invalid option max_drop: ... (got -1)'."""
    parts: dict[str, str] = {}
    for item in error.errors(include_url=False):
        where = str(item["loc"][0]) if item["loc"] else "options"
        message = item["msg"].removeprefix("Value error, ")
        parts.setdefault(where, f"invalid option {where}: {message} (got {item['input']!r})")
    return "; ".join(parts.values())


OPTION_NAMES = tuple(QuantizeOptions.model_fields)


def proto_path(name: str) -> str:
    """Where option `name` lives in edgeq.v1.JobSpec, as a dotted path."""
    extra = QuantizeOptions.model_fields[name].json_schema_extra
    return str(extra["proto"]) if isinstance(extra, dict) and "proto" in extra else name


def flag_of(name: str) -> str:
    """The command-line flag of option `name`."""
    extra = QuantizeOptions.model_fields[name].json_schema_extra
    return str(extra["flag"]) if isinstance(extra, dict) and "flag" in extra else "--" + name.replace("_", "-")
