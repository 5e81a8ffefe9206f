"""What OpenVINO's CPU plugin really runs for a model: counted from `compiled.get_runtime_model()`.

The IR says where NNCF put quantizers; the plugin decides what runs. It fuses a FakeQuantize into
the node before it where it can (a FullyConnected, an Eltwise, an MVN, an attention Subgraph) and
runs the rest standalone in f32, behind a Reorder when the neighbours run in bf16. Each runtime
node lists the IR ops it holds (`originalLayersNames`), so every activation quantizer and every
SmoothQuant Multiply of the IR can be followed to the node that runs it.
"""

from __future__ import annotations

import collections
from typing import Any

import openvino as ov

_INT8 = ("i8", "u8")


def _names(text: str) -> set[str]:
    return {part for part in text.split(",") if part}


def _reorder_kind(op: ov.Node) -> str:
    """'<from> -> <to>' precision of a Reorder; 'layout <precision>' when it only changes the layout."""
    parent = op.input_value(0).get_node().get_rt_info()
    source = parent["outputPrecisions"].astype(str) if "outputPrecisions" in parent else "?"
    target = op.get_rt_info()["outputPrecisions"].astype(str)
    return f"layout {target}" if source == target else f"{source} -> {target}"


def runtime_table(ir: ov.Model, compiled: ov.CompiledModel) -> dict[str, Any]:
    """Counts of what `compiled` (compiled from `ir`) runs: layer type and precision, the node type
    holding each activation FakeQuantize and SmoothQuant Multiply of `ir` ("standalone" for a
    FakeQuantize that runs as its own node), Reorders by precision, and a summary."""
    fq_names = {op.get_friendly_name() for op in ir.get_ops() if op.get_type_name() == "FakeQuantize"
                and op.input_value(0).get_node().get_type_name() != "Constant"}
    smooth_names = {op.get_friendly_name() for op in ir.get_ops() if op.get_type_name() == "Multiply"
                    and "nncf_smooth_quant" in op.get_friendly_name()}
    layers: collections.Counter[str] = collections.Counter()
    fq_in: collections.Counter[str] = collections.Counter()
    smooth_in: collections.Counter[str] = collections.Counter()
    reorders: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind, precision = info["layerType"].astype(str), info["runtimePrecision"].astype(str)
        if kind in ("Const", "Input", "Output"):
            continue
        layers[f"{kind} {precision}"] += 1
        held = _names(info["originalLayersNames"].astype(str))
        fq_in.update(["standalone" if kind == "FakeQuantize" else kind] * len(held & fq_names))
        smooth_in.update([kind] * len(held & smooth_names))
        if kind == "Reorder":
            reorders[_reorder_kind(op)] += 1

    def count(kinds: tuple[str, ...], int8: bool | None = None) -> int:
        return sum(n for key, n in layers.items() if key.split()[0] in kinds
                   and (int8 is None or key.endswith(_INT8) == int8))

    return {
        "layers": dict(sorted(layers.items())),
        "activation_fq_in_ir": len(fq_names),
        "activation_fq_held_by": dict(fq_in.most_common()),
        "smooth_quant_multiplies_in_ir": len(smooth_names),
        "smooth_quant_multiplies_held_by": dict(smooth_in.most_common()),
        "reorders": dict(reorders.most_common()),
        "summary": {
            "standalone_fq": count(("FakeQuantize",)),
            "reorders": sum(reorders.values()),
            "eltwise": count(("Eltwise",)),
            "fc_int8": count(("FullyConnected",), True),
            "fc_float": count(("FullyConnected",), False),
            "attention_int8": count(("Subgraph", "ScaledAttn"), True),
            "attention_float": count(("Subgraph", "ScaledAttn"), False),
        },
    }
