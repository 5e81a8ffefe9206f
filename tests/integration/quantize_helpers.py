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
    quantizers = fq_consumers(model)
    assert quantizers, "no FakeQuantize in the model: nothing was quantized"
    for fq, fed in quantizers.items():
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


def sensitive_weights(path: Path, layers: list[tuple[int, str]], factor: float = 1000.0) -> Path:
    """The shipped Fashion-MNIST ViT's weights, made sensitive to INT8 on purpose, as safetensors.

    For each (block, "qkv" | "fc1"): channel 0 of the LayerNorm feeding that FC is scaled by `factor`
    and the FC's weights for that channel divided by it. The float model computes the same function
    (checked here), but the FC's one per-tensor activation scale must now cover a channel `factor`
    times wider than the rest, which round to zero: that FC and everything it feeds lose their
    signal, on any CPU. SmoothQuant would move the channel's range into the weights and undo this,
    so quantize these weights with SmoothQuant off.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from edgeq.models import fmnist_vit

    original = load_file(str(fmnist_vit.weights_path()))
    state = {name: tensor.clone() for name, tensor in original.items()}
    for block, fc in layers:
        norm, weight = {"qkv": ("norm1", "attn.qkv.weight"), "fc1": ("norm2", "mlp.fc1.weight")}[fc]
        state[f"blocks.{block}.{norm}.weight"][0] *= factor
        state[f"blocks.{block}.{norm}.bias"][0] *= factor
        state[f"blocks.{block}.{weight}"][:, 0] /= factor
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    outputs = []
    for weights in (original, state):
        module = fmnist_vit.build().eval()
        module.load_state_dict(weights)
        with torch.no_grad():
            outputs.append(module(images))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-3, atol=1e-3)
    save_file(state, str(path))
    return path
