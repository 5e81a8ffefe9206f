"""Which IR a machine serves, INT8 or float, decided on its own CPU.

Why on the serving machine: whether INT8 beats float depends on the CPU that runs it. With AMX,
OpenVINO's float default is BF16 and INT8 may lose to it; with VNNI and no AMX the default is BF16
(avx512_bf16) or FP32 and INT8 usually wins by a wide margin. The quantizing machine cannot know
which box a bundle lands on, so a version carries both IRs (edgeq.store.repository.FLOAT_FILES)
and `edgeq models import` measures them here and records the result in the manifest's `serve`
field, which the registry reads when it loads the version.

The measurement: both IRs compiled as the server compiles them (THROUGHPUT hint, the threads the
CPU quota allows), static batch 1, alternating round by round so drift hits both alike; the
decision uses the ratio of the two medians, as the job's speed gate does (edgeq.quantization.speed),
never an absolute time.
INT8 is served when it is at least the version's speed gate (`min_speedup` in its report) faster;
a version with no recorded gate needs INT8 strictly faster.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeq.errors import FailedPrecondition, InvalidArgument
from edgeq.store.repository import FLOAT_FILES, MODEL_FILES, REPORT, has_float_ir

Mode = Literal["measure", "int8", "float", "none"]  # none: serve INT8, measure nothing
DYNAMIC_LENGTH = 128  # size given to a dynamic non-batch dimension (tokens): edgeq's default max_length
NO_FLOAT = "no float IR in the bundle"


def required_speedup(report: dict[str, Any]) -> float | None:
    """The version's speed gate, when its job measured speed (None: not recorded)."""
    gate = report.get("speed_gate")
    value = gate.get("min_speedup") if isinstance(gate, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def int8_wins(speedup: float, min_speedup: float | None) -> bool:
    """`speedup`: INT8's throughput over the float IR's. The speed gate's own rule (>=) when recorded."""
    return speedup >= min_speedup if min_speedup is not None else speedup > 1.0


def _static_inputs(model: Any) -> dict[int, np.ndarray]:
    """One row for every input (by index), dynamic dimensions fixed: a dynamic batch becomes 1 (the
    server's static batch-1 copy), other dynamic sizes DYNAMIC_LENGTH. Floats are random; integers
    (token ids, masks) are ones, valid for any vocabulary."""
    rng = np.random.default_rng(0)
    arrays = {}
    for index, port in enumerate(model.inputs):
        shape = [(1 if i == 0 else DYNAMIC_LENGTH) if d.is_dynamic else d.get_length()
                 for i, d in enumerate(port.get_partial_shape())]
        dtype = port.get_element_type().to_dtype()
        arrays[index] = (rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
                         else np.ones(shape, dtype))
    return arrays


def measure(folder: Path, seconds: float = 1.0, rounds: int = 3) -> tuple[float, float, str]:
    """(INT8 rows/s, float rows/s: medians of the rounds; the float IR's precision on this CPU)."""
    from edgeq.compile import compile_cpu, core
    from edgeq.runtime.registry import RuntimeConfig
    from edgeq.runtime.throughput import alternating_medians

    compiled = {}
    inputs: dict[int, np.ndarray] = {}
    for ir, (xml, weights) in (("int8", MODEL_FILES), ("float", FLOAT_FILES)):
        model = core().read_model(str(folder / xml), str(folder / weights))
        inputs = inputs or _static_inputs(model)
        model.reshape({name: list(array.shape) for name, array in inputs.items()})
        compiled[ir] = compile_cpu(model, hint="THROUGHPUT", extra=RuntimeConfig().compile_properties())
    precision = str(compiled["float"].get_property("INFERENCE_PRECISION_HINT").get_type_name())
    medians = alternating_medians(compiled, inputs, seconds, rounds)
    return medians["int8"], medians["float"], precision


def choose(folder: Path, mode: Mode = "measure", seconds: float = 1.0, rounds: int = 3) -> dict[str, Any]:
    """The `serve` record for the version in `folder` (verified, not yet published or already so)."""
    from edgeq.compile import cpu_description

    if mode not in ("measure", "int8", "float", "none"):
        raise InvalidArgument(f"choice {mode!r}: measure, int8, float or none")
    has_float = has_float_ir(folder)
    try:
        report = json.loads((folder / REPORT).read_text())
    except (OSError, ValueError):
        report = {}
    gate = required_speedup(report if isinstance(report, dict) else {})
    cpu = cpu_description()
    record: dict[str, Any] = {
        "ir": "int8", "why": "", "measured": False, "int8_per_s": None, "float_per_s": None, "speedup": None,
        "min_speedup": gate, "cpu": cpu["name"], "cpu_flags": cpu["isa_flags"],
        "default_float_precision": cpu["default_inference_precision"], "openvino": cpu["openvino"],
        "decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if mode == "float" and not has_float:
        raise FailedPrecondition(f"cannot serve the float IR: {NO_FLOAT} (quantized with --no-float-ir or by an "
                                 "edgeq that did not keep it)")
    if not has_float:
        return {**record, "why": NO_FLOAT}
    if mode in ("int8", "float"):
        return {**record, "ir": mode, "why": f"chosen by hand (--choose {mode})"}
    if mode == "none":
        return {**record, "why": "not measured (--no-measure): INT8 by default"}
    try:
        int8_rate, float_rate, precision = measure(folder, seconds, rounds)
    except RuntimeError as error:  # OpenVINO cannot read or compile one of the IRs on this machine
        raise FailedPrecondition(f"cannot measure the INT8 and float IRs on this CPU ({str(error).splitlines()[0]}); "
                                 "import with --choose int8|float or --no-measure") from None
    ratio = int8_rate / float_rate
    won = int8_wins(ratio, gate)
    need = (f"x{gate:g}, the version's speed gate" if gate is not None else "x1 (INT8 must be faster)")
    why = (f"INT8 runs at x{ratio:.3f} the float IR's throughput ({precision}) on this CPU, "
           f"{'meeting' if won else 'below'} {need}")
    return {**record, "ir": "int8" if won else "float", "why": why, "measured": True,
            "int8_per_s": round(int8_rate, 1), "float_per_s": round(float_rate, 1), "speedup": ratio,
            "default_float_precision": precision}


def summary(choice: dict[str, Any]) -> str:
    """One line: what is served, why, and the two figures when measured."""
    figures = (f"; INT8 {choice['int8_per_s']:.0f}/s, float {choice['float_per_s']:.0f}/s"
               if choice.get("measured") else "")
    ir = "float" if choice.get("ir") == "float" else "INT8"
    return f"serves the {ir} IR ({choice.get('why')}{figures})"
