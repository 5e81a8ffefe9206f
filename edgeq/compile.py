"""How edgeq compiles models on the CPU: one place for precision and performance hints.

`precision="f32"` is true FP32 (the float reference and the honest baseline); `"default"` is what
OpenVINO picks by itself (BF16 on AMX CPUs, FP32 elsewhere); INT8 models compile with "default".
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import openvino as ov


@lru_cache(maxsize=1)
def core() -> ov.Core:
    return ov.Core()


def compile_cpu(model: ov.Model | str, *, precision: str = "default", hint: str = "THROUGHPUT",
                extra: dict[str, Any] | None = None) -> ov.CompiledModel:
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    if precision != "default":
        config["INFERENCE_PRECISION_HINT"] = precision
    config.update(extra or {})
    return core().compile_model(model, "CPU", config)


def cpu_description() -> dict[str, Any]:
    """What this CPU offers OpenVINO, recorded in every report and bundle."""
    c = core()
    capabilities = list(c.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    default_precision = c.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "avx512_bf16")
                    flags = sorted(set(line.split(":", 1)[1].split()) & set(wanted))
                    break
    except OSError:
        pass
    return {
        "name": str(c.get_property("CPU", "FULL_DEVICE_NAME")),
        "capabilities": capabilities,
        "default_inference_precision": default_precision,
        "isa_flags": flags,
        "openvino": ov.get_version(),
    }
