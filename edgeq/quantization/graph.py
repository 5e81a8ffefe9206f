"""Small read-only queries over an `openvino.Model` graph used by rules, fallback and analysis."""

from __future__ import annotations

from collections.abc import Iterable

import openvino as ov

# Ops a quantizer's output may pass through on its way to the op it quantizes.
_TRANSPARENT = {"Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}
QUANTIZABLE_TYPES = {"MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData", "ScaledDotProductAttention"}


def ops_by_name(model: ov.Model) -> dict[str, ov.Node]:
    return {op.get_friendly_name(): op for op in model.get_ops()}


def consumers(node: ov.Node) -> list[ov.Node]:
    return [target.get_node() for output in node.outputs() for target in output.get_target_inputs()]


def producers(node: ov.Node) -> list[ov.Node]:
    return [node.input_value(i).get_node() for i in range(node.get_input_size())]


def real_consumers(node: ov.Node, depth: int = 3) -> list[ov.Node]:
    """Consumers of `node`, looking through shape/precision-only ops."""
    result: list[ov.Node] = []
    frontier = consumers(node)
    for _ in range(depth):
        next_frontier = []
        for candidate in frontier:
            if candidate.get_type_name() in _TRANSPARENT:
                next_frontier.extend(consumers(candidate))
            else:
                result.append(candidate)
        frontier = next_frontier
    return result


def fq_consumers(model: ov.Model) -> dict[str, list[str]]:
    """FakeQuantize name -> names of the ops it feeds."""
    return {fq.get_friendly_name(): [c.get_friendly_name() for c in real_consumers(fq)]
            for fq in model.get_ops() if fq.get_type_name() == "FakeQuantize"}


def quantized_ops(model: ov.Model) -> set[str]:
    """Names of ops with at least one FakeQuantize on an input (the 'layers' that run in INT8)."""
    return {name for fed in fq_consumers(model).values() for name in fed}


def quantizable_ops(model: ov.Model) -> list[str]:
    return sorted(op.get_friendly_name() for op in model.get_ops() if op.get_type_name() in QUANTIZABLE_TYPES)


def op_types(model: ov.Model, names: Iterable[str]) -> dict[str, str]:
    table = ops_by_name(model)
    return {name: table[name].get_type_name() for name in names if name in table}
