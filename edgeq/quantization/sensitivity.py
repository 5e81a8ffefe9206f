"""Per-layer error of the INT8 model: SQNR (dB) of each quantized op's output against float.

Both models get the quantized ops' outputs as extra model outputs; a few samples run through both
at true FP32 precision for the float side. SQNR = 10 log10(sum(x^2) / sum((x - q)^2)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import openvino as ov

from edgeq.compile import compile_cpu
from edgeq.quantization.graph import ops_by_name

# Float outputs for ops named in both graphs; shape-only ops are not interesting.
_MEASURED_TYPES = {"MatMul", "Convolution", "GroupConvolution", "ConvolutionBackpropData", "ScaledDotProductAttention"}


def _with_outputs(model: ov.Model, names: list[str]) -> tuple[ov.Model, dict[str, int]]:
    """A clone whose outputs include each named op's first output; name -> output index."""
    clone = model.clone()
    table = ops_by_name(clone)
    clone.add_outputs([table[n].output(0) for n in names if n in table])
    index: dict[str, int] = {}
    for position, output in enumerate(clone.outputs):
        source = output.get_node().input_value(0).get_node().get_friendly_name()
        index.setdefault(source, position)
    return clone, {n: index[n] for n in names if n in index}


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def paired_outputs(float_model: ov.Model, int8_model: ov.Model, names: list[str],
                   inputs: np.ndarray) -> Iterator[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per sample of `inputs`: each named op's output in the float model (true FP32) and in INT8."""
    float_probe, float_index = _with_outputs(float_model, names)
    int8_probe, int8_index = _with_outputs(int8_model, names)
    kept = [n for n in names if n in float_index and n in int8_index]
    compiled_float = compile_cpu(float_probe, precision="f32", hint="LATENCY")
    compiled_int8 = compile_cpu(int8_probe, hint="LATENCY")
    for sample in inputs:
        batch = {0: np.ascontiguousarray(sample[None], dtype=np.float32)}
        reference, quantized = compiled_float(batch), compiled_int8(batch)
        yield {n: (reference[float_index[n]], quantized[int8_index[n]]) for n in kept}


def per_layer_sqnr(float_model: ov.Model, int8_model: ov.Model, layers: list[str], inputs: np.ndarray,
                   positions: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    """SQNR per layer name over `inputs` (N, ...), worst first.

    `positions(sample)` picks the rows of each (batch-1) output that count, e.g. the real tokens of a
    padded sentence: padding is masked out of attention and pooling, and would dominate the error.
    """
    float_table, int8_table = ops_by_name(float_model), ops_by_name(int8_model)
    names = [n for n in layers if n in float_table and n in int8_table
             and float_table[n].get_type_name() in _MEASURED_TYPES]
    if not names or len(inputs) == 0:
        return {}
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for sample, pairs in zip(inputs, paired_outputs(float_model, int8_model, names, inputs)):
        rows = positions(sample) if positions is not None else None
        for name, (x, q) in pairs.items():
            x, q = x.astype(np.float64), q.astype(np.float64)
            if rows is not None:
                x, q = x[0][rows], q[0][rows]
            signal[name] = signal.get(name, 0.0) + float(np.square(x).sum())
            noise[name] = noise.get(name, 0.0) + float(np.square(x - q).sum())
    scores = {name: _db(signal[name], noise[name]) for name in signal}
    return dict(sorted(scores.items(), key=lambda item: item[1]))
