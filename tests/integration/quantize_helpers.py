"""Assertions on produced OpenVINO IR shared by the quantization tests."""

from __future__ import annotations

from pathlib import Path

import openvino as ov

from edgeq.quantization.graph import fq_consumers, ops_by_name, real_consumers
from edgeq.report.model import Report


def read(path: Path) -> ov.Model:
    return ov.Core().read_model(str(path))


def assert_float_where_the_rules_say(model: ov.Model, report: Report) -> None:
    """No FakeQuantize feeds a node any rule kept in float, nor any LayerNorm/Softmax op."""
    kept = {n for rule in report.rules for n in rule.nodes}
    table = ops_by_name(model)
    for fq, fed in fq_consumers(model).items():
        for name in fed:
            assert name not in kept, f"{fq} feeds {name}, which a rule keeps in float"
            assert table[name].get_type_name() not in ("MVN", "Softmax"), f"{fq} feeds {name}"


def matmuls_quantized(model: ov.Model) -> tuple[int, int]:
    """(MatMuls with a FakeQuantize on an input, all MatMuls with a weight or activation input)."""
    quantized = set()
    for op in model.get_ops():
        if op.get_type_name() == "FakeQuantize":
            quantized.update(c.get_friendly_name() for c in real_consumers(op) if c.get_type_name() == "MatMul")
    total = [op for op in model.get_ops() if op.get_type_name() == "MatMul"]
    return len(quantized), len(total)
