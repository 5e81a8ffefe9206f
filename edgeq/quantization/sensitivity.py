"""Per-layer error of the INT8 model: SQNR (dB) of each quantized op's output against float.

Both models get the quantized ops' outputs as extra model outputs; a few samples run through both
at true FP32 precision for the float side. SQNR = 10 log10(sum(x^2) / sum((x - q)^2)).

An extra output must not change what the INT8 model computes, and in OpenVINO's CPU plugin it can
(OpenVINO 2026.4): exposing the raw output of a quantized MatMul whose bias or scale the plugin
fuses into it wrecked ViT-S/14's own output (its query projections) and MiniLM's (its
attention-score MatMuls). So each op is observed after the constant bias and
scale that follow it (the layer's output as the next op sees it), and the probe is checked against
the unmodified INT8 model on one sample; exposures that still change it are left unmeasured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import openvino as ov

from edgeq.compile import compile_cpu
from edgeq.data import feed
from edgeq.quantization.graph import QUANTIZABLE_TYPES, ops_by_name

_CONSTANT_ELEMENTWISE = {"Add", "Multiply", "Divide", "Subtract"}
# An exposed output whose model outputs drift further than this (cosine, on one sample) is refused:
# faithful exposures move a model's outputs by rounding noise, broken ones by far more than this.
FAITHFUL = 0.995


def _is_constant(node: ov.Node) -> bool:
    if node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


def observed(op: ov.Node) -> ov.Node:
    """The op whose output shows `op`'s result: `op`, or the last of the constant bias/scale ops
    (Add, Multiply, ...) that follow it alone. A bias or scale does not change an error ratio much,
    and exposing the raw MatMul before them is what breaks OpenVINO's fused INT8 kernels."""
    while True:
        users = [t.get_node() for t in op.output(0).get_target_inputs() if t.get_node().get_type_name() != "ShapeOf"]
        if len(users) != 1 or users[0].get_type_name() not in _CONSTANT_ELEMENTWISE:
            return op
        if not any(_is_constant(value.get_node()) for value in users[0].input_values()):
            return op
        op = users[0]


def observed_names(model: ov.Model, names: list[str]) -> dict[str, str]:
    """name -> the name of the op its result is read from (`observed`)."""
    table = ops_by_name(model)
    return {n: observed(table[n]).get_friendly_name() for n in names if n in table}


def _with_outputs(model: ov.Model, names: list[str]) -> tuple[ov.Model, dict[str, int]]:
    """A clone whose outputs include what each named op computes (see `observed`); name -> output index."""
    clone = model.clone()
    table = ops_by_name(clone)
    shown = observed_names(clone, names)
    clone.add_outputs([table[name].output(0) for name in dict.fromkeys(shown.values())])
    index: dict[str, int] = {}
    for position, output in enumerate(clone.outputs):
        source = output.get_node().input_value(0).get_node().get_friendly_name()
        index.setdefault(source, position)
    return clone, {n: index[shown[n]] for n in shown if shown[n] in index}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0 else float(np.array_equal(a, b))


def faithful_probe(int8_model: ov.Model, names: list[str], sample: np.ndarray
                   ) -> tuple[ov.CompiledModel, dict[str, int], list[str]]:
    """The INT8 model compiled with the named ops' outputs exposed, (compiled, name -> index, names
    left out). Checked on `sample` against the model as it is: if its own outputs move, the names are
    tried in groups of like layers (their names without digits) and the groups that move it are left out."""
    batch = feed.one(sample)
    plain = compile_cpu(int8_model, hint="LATENCY")(batch)
    own = len(int8_model.outputs)

    def probe(chosen: list[str]) -> tuple[ov.CompiledModel, dict[str, int], bool]:
        clone, index = _with_outputs(int8_model, chosen)
        compiled = compile_cpu(clone, hint="LATENCY")
        got = compiled(batch)
        return compiled, index, all(_cosine(got[i], plain[i]) >= FAITHFUL for i in range(own))

    compiled, index, ok = probe(names)
    if ok:
        return compiled, index, []
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(re.sub(r"\d+", "#", name), []).append(name)
    kept = [name for group in groups.values() if probe(group)[2] for name in group]
    compiled, index, ok = probe(kept)
    if not ok:  # should not happen: every group alone was faithful
        return compiled, {}, list(names)
    return compiled, index, [name for name in names if name not in kept]


def _db(signal: float, noise: float) -> float:
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def paired_outputs(float_model: ov.Model, int8_model: ov.Model, names: list[str], inputs: np.ndarray,
                   unmeasured: list[str] | None = None) -> Iterator[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per sample of `inputs`: each named op's output in the float model (true FP32) and in INT8.
    Names whose exposure would change the INT8 model (`faithful_probe`) are appended to `unmeasured`."""
    if len(inputs) == 0:
        return
    # Both sides must be read at the same op (an INT8 graph could end a bias chain elsewhere).
    float_shown, int8_shown = observed_names(float_model, names), observed_names(int8_model, names)
    names = [n for n in names if n in float_shown and float_shown[n] == int8_shown.get(n)]
    compiled_int8, int8_index, refused = faithful_probe(int8_model, names, inputs[0])
    if unmeasured is not None:
        unmeasured.extend(refused)
    float_probe, float_index = _with_outputs(float_model, [n for n in names if n in int8_index])
    kept = [n for n in names if n in float_index and n in int8_index]
    compiled_float = compile_cpu(float_probe, precision="f32", hint="LATENCY")
    for sample in inputs:
        batch = feed.one(sample)
        reference, quantized = compiled_float(batch), compiled_int8(batch)
        yield {n: (reference[float_index[n]], quantized[int8_index[n]]) for n in kept}


def sqnr_layers(float_model: ov.Model, int8_model: ov.Model, layers: list[str]) -> list[str]:
    """The layers of `layers` whose SQNR means something: in both graphs, and of a quantizable type."""
    float_table, int8_table = ops_by_name(float_model), ops_by_name(int8_model)
    return [n for n in layers if n in float_table and n in int8_table and float_table[n].get_type_name() in QUANTIZABLE_TYPES]


class Tally(Protocol):
    names: list[str]

    def add(self, sample: np.ndarray, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None: ...


class SqnrTally:
    """Signal and noise energy per layer, summed over the samples it is given.

    `positions(sample)` picks the rows of each (batch-1) output that count, e.g. the real tokens of a
    padded sentence: padding is masked out of attention and pooling, and would dominate the error.
    """

    def __init__(self, names: list[str], positions: Callable[[np.ndarray], np.ndarray] | None = None):
        self.names, self.positions = names, positions
        self.signal: dict[str, float] = {}
        self.noise: dict[str, float] = {}

    def add(self, sample: np.ndarray, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        rows = self.positions(sample) if self.positions is not None else None
        for name in self.names:
            if name not in pairs:
                continue
            x, q = (a.astype(np.float64) for a in pairs[name])
            if rows is not None:
                x, q = x[0][rows], q[0][rows]
            self.signal[name] = self.signal.get(name, 0.0) + float(np.square(x).sum())
            self.noise[name] = self.noise.get(name, 0.0) + float(np.square(x - q).sum())

    def result(self) -> dict[str, float]:
        """SQNR (dB) per layer, worst first."""
        scores = {name: _db(self.signal[name], self.noise[name]) for name in self.signal}
        return dict(sorted(scores.items(), key=lambda item: item[1]))


def run_tallies(float_model: ov.Model, int8_model: ov.Model, inputs: np.ndarray, tallies: list[Tally]) -> list[str]:
    """Feed every tally from one run of both models over `inputs`: each extra-output model compiles
    once for all of them. Returns the names left unmeasured (`faithful_probe`)."""
    names = sorted({name for tally in tallies for name in tally.names})
    unmeasured: list[str] = []
    if not names or len(inputs) == 0:
        return unmeasured
    for sample, pairs in zip(inputs, paired_outputs(float_model, int8_model, names, inputs, unmeasured)):
        for tally in tallies:
            tally.add(sample, pairs)
    return unmeasured


def per_layer_sqnr(float_model: ov.Model, int8_model: ov.Model, layers: list[str], inputs: np.ndarray,
                   positions: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, float]:
    """SQNR per layer name over `inputs` (N, ...), worst first (see SqnrTally for `positions`)."""
    tally = SqnrTally(sqnr_layers(float_model, int8_model, layers), positions)
    run_tallies(float_model, int8_model, inputs, [tally])
    return tally.result()
