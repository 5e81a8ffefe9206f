"""One options model: the CLI flags, the JobSpec message and edgeq.quantize all come from it, with
the same defaults; every numeric option is checked, and a violation names its field."""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgeq
from edgeq.cli import build_parser
from edgeq.cli.flags import options_from_flags
from edgeq.errors import InvalidArgument
from edgeq.options import OPTION_NAMES, QuantizeOptions, flag_of, proto_path
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from edgeq_server.specs import options_from_proto, options_to_proto

# One value other than the default for every option; max_drop 0 and min_speedup 0 are real values.
NON_DEFAULT: dict[str, Any] = {
    "input_shape": (1, 28, 28), "image_size": (32, 32), "mean": (0.5,), "std": (0.25,), "output_node": "head", "max_length": 48,
    "metric": "top1", "max_drop": 0.0, "relative": True, "validation_limit": 500, "holdout_fraction": 0.2,
    "preset": "mixed", "rules": ("layernorm", "head"), "subset_size": 64, "smooth_quant_alpha": 0.85,
    "activations_range": "minmax", "no_transformer": True, "auto": True, "ranking_samples": 50,
    "search_calibration": 20, "plan": True, "no_fallback": True, "time_budget": 120.0, "max_iterations": 5,
    "ranking_subset": 40, "sensitivity_samples": 2, "speed_seconds": 0.5, "speed_rounds": 1, "batch_sizes": (1, 8),
    "min_speedup": 0.0, "force_promote": True, "no_float_ir": True,
}
NEEDS = {"mean": {"image_size": (32, 32)}, "std": {"image_size": (32, 32)}}  # set together
JOB = ["--model", "timm:edgeq_vit_fmnist", "--calibration", "c.npz", "--name", "m"]


def cli_arguments(values: dict[str, Any]) -> list[str]:
    """The flags that set `values`, as a user types them."""
    argv: list[str] = []
    for name, value in values.items():
        if value is True:
            argv.append(flag_of(name))
        elif name == "rules":
            argv += [part for rule in value for part in (flag_of(name), rule)]
        else:
            argv += [flag_of(name), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return argv


def parse(command: str, *argv: str) -> QuantizeOptions:
    extra = ["--store", "s"] if command == "quantize" else []
    return options_from_flags(build_parser().parse_args([command, *JOB, *extra, *argv]))


def test_the_table_covers_every_option() -> None:
    assert set(NON_DEFAULT) == set(OPTION_NAMES)
    defaults = QuantizeOptions()
    assert all(getattr(defaults, name) != value for name, value in NON_DEFAULT.items())


@pytest.mark.parametrize("command", ["quantize", "submit"])
def test_flags_default_to_the_model_and_set_every_option(command: str) -> None:
    assert parse(command) == QuantizeOptions()
    assert parse(command).model_fields_set == set()  # a server applies its own (the same) defaults
    for name, value in NON_DEFAULT.items():
        assert getattr(parse(command, *cli_arguments({name: value, **NEEDS.get(name, {})})), name) == value, name
    assert parse(command, *cli_arguments(NON_DEFAULT)) == QuantizeOptions(**NON_DEFAULT)


def test_the_job_spec_defaults_to_the_model_and_carries_every_option() -> None:
    assert options_from_proto(pb.JobSpec()) == QuantizeOptions()
    for name, value in NON_DEFAULT.items():
        options = QuantizeOptions(**{name: value, **NEEDS.get(name, {})})
        assert options_from_proto(options_to_proto(options, pb.JobSpec())) == options, name
    everything = options_to_proto(QuantizeOptions(**NON_DEFAULT), pb.JobSpec())
    assert options_from_proto(pb.JobSpec.FromString(everything.SerializeToString())) == QuantizeOptions(**NON_DEFAULT)
    # a recorded job echoes every option, defaults included
    echoed = options_to_proto(QuantizeOptions(), pb.JobSpec(), every=True)
    assert echoed.HasField("max_drop") and echoed.max_drop == 0.01 and echoed.min_speedup == 1.1


def test_zero_budget_and_no_speed_gate_survive_the_wire() -> None:
    message = pb.JobSpec.FromString(pb.JobSpec(max_drop=0.0, min_speedup=0.0).SerializeToString())
    options = options_from_proto(message)
    assert (options.max_drop, options.min_speedup) == (0.0, 0.0)


def test_edgeq_quantize_takes_every_option_with_the_same_default() -> None:
    parameters = inspect.signature(edgeq.quantize).parameters
    for name, field in QuantizeOptions.model_fields.items():
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert parameters[name].default == field.default, name
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def test_help_states_each_default() -> None:
    subcommands: Any = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    text = subcommands.choices["quantize"].format_help()
    assert "(default: 0.01)" in text and "(default: 1.1)" in text and "--min-speedup" in text


def test_violations_name_the_field_in_the_model_and_on_the_wire() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(speed_seconds=1e9), "speed_seconds"), (dict(time_budget=-5), "time_budget"),
        (dict(time_budget=1e300), "time_budget"), (dict(min_speedup=-1), "min_speedup"),
        (dict(min_speedup=math.nan), "min_speedup"), (dict(smooth_quant_alpha=math.nan), "smooth_quant_alpha"),
        (dict(max_iterations=2**32 - 1), "max_iterations"), (dict(input_shape=(-1,)), "input_shape"),
        (dict(input_shape=(2**40,)), "input_shape"), (dict(image_size=(-5, -5)), "image_size"),
        (dict(rules=("nonsense",)), "rules"), (dict(mean=(0.5,)), "image_size"), (dict(metric="f1"), "metric"),
        (dict(plan=True, speed_seconds=0), "speed_seconds"),
    ]
    for values, field in cases:
        with pytest.raises(InvalidArgument, match=f"invalid option {field}:"):
            QuantizeOptions(**values)
    wire = pb.JobSpec(time_budget_seconds=-5, preprocessing=pb.Preprocessing(size=[-5, -5]))
    with pytest.raises(InvalidArgument) as caught:
        options_from_proto(wire)
    assert "time_budget_seconds" in str(caught.value) and "preprocessing.size" in str(caught.value)


# -- generated JobSpecs: each is accepted with every value in range, or refused naming a field it set

FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0, 1e9, 1e300, -0.0, 0.5])
FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
UINT32 = st.integers(0, 2**32 - 1) | st.sampled_from([0, 1, 2**32 - 1])
NUMERIC = {
    "max_drop": FLOAT, "time_budget_seconds": FLOAT, "min_speedup": FLOAT, "speed_seconds": FLOAT,
    "holdout_fraction": FLOAT, "max_iterations": UINT32, "ranking_subset": UINT32, "validation_limit": UINT32,
    "sensitivity_samples": UINT32, "speed_rounds": UINT32, "ranking_samples": UINT32, "search_calibration": UINT32,
    "recipe.subset_size": UINT32, "recipe.smooth_quant_alpha": FLOAT32,
    "input_shape": st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 300), min_size=1, max_size=10),
    "batch_sizes": st.lists(UINT32 | st.integers(0, 10), min_size=1, max_size=10),
    "preprocessing.size": st.lists(st.integers(-(2**31), 2**31 - 1) | st.integers(-2, 300), min_size=1, max_size=3),
    "preprocessing.mean": st.lists(FLOAT32, min_size=1, max_size=4),
    "preprocessing.std": st.lists(FLOAT32, min_size=1, max_size=4),
}
WIRE = {proto_path(name): name for name in OPTION_NAMES}


def _set(message: pb.JobSpec, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    holder: Any = message
    for name in parents:
        holder = getattr(holder, name)
    if isinstance(value, list):
        getattr(holder, leaf).extend(value)
    else:
        setattr(holder, leaf, value)


def _in_range(options: QuantizeOptions) -> None:
    """Every number finite and within its field's bounds; shapes positive and bounded."""
    for name in OPTION_NAMES:
        value = getattr(options, name)
        for number in value if isinstance(value, tuple) else (value,):
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                assert math.isfinite(number), name
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for rule in QuantizeOptions.model_fields[name].metadata:
                assert value >= getattr(rule, "ge", -math.inf) and value > getattr(rule, "gt", -math.inf), name
                assert value <= getattr(rule, "le", math.inf) and value < getattr(rule, "lt", math.inf), name
    for shape in (options.input_shape, options.image_size, options.batch_sizes):
        assert shape is None or all(1 <= d <= 1 << 16 for d in shape)
    assert options.input_shape is None or math.prod(options.input_shape) <= 1 << 24
    assert all(s > 0 for s in options.std or ())


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(NUMERIC)), st.none(), min_size=1, max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: NUMERIC[k] for k in keys})))
def test_generated_job_specs_are_accepted_in_range_or_refused_naming_a_field(values: dict[str, Any]) -> None:
    message = pb.JobSpec()
    for path, value in values.items():
        _set(message, path, value)
    try:
        options = options_from_proto(message)
    except InvalidArgument as error:
        named = {path for path in values if f"invalid option {path}:" in str(error)}
        size_missing = "invalid option preprocessing.size: H,W is needed" in str(error)
        assert named or (size_missing and {"preprocessing.mean", "preprocessing.std"} & set(values)), str(error)
        return
    _in_range(options)
