"""Which recipe makes INT8 faster than the BF16 default? Quantize one model several ways, measure each.

    python benchmarks/recipes.py --json docs/results/speed/recipes_deit_s_CPU.json   # DeiT-S, random init
    python benchmarks/recipes.py --model timm:deit_small_patch16_224 --batches 1,8 --seconds 2 --rounds 3

For every recipe: the cosine of INT8 to FP32 outputs on the calibration images, INT8/BF16 and
INT8/FP32 throughput (edgeq.quantization.speed.compare: alternating rounds, medians), and what the
CPU plugin runs (layer types of `get_runtime_model()`: standalone FakeQuantize, Reorder, Eltwise).
The default recipe is also compiled with INFERENCE_PRECISION_HINT=f32, so the float parts of the
INT8 graph run in f32 instead of bf16 (no bf16/i8 reorders).
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

import edgeq
from edgeq.compile import compile_cpu
from edgeq.quantization.speed import SpeedSettings, _throughput, compare
from edgeq.sources import load_model

RECIPES = {
    "default (layernorm, softmax float)": dict(rules=("layernorm", "softmax")),
    "no ignored scope": dict(rules=()),
    "softmax only": dict(rules=("softmax",)),
    "mixed preset": dict(rules=("layernorm", "softmax"), preset="mixed"),
    "SmoothQuant off": dict(rules=("layernorm", "softmax"), smooth_quant_alpha=-1.0),
}
COUNTED = ("FullyConnected", "Subgraph", "FakeQuantize", "Reorder", "Eltwise", "MVN")


def runtime_layers(compiled: ov.CompiledModel) -> dict[str, int]:
    counts = collections.Counter(op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops())
    return {kind: counts[kind] for kind in COUNTED}


def f32_hint_ratio(int8: ov.Model, batch: np.ndarray, seconds: float, rounds: int) -> float:
    """Throughput of the INT8 model with float parts in f32, over the same model at the default hint."""
    default, f32 = compile_cpu(int8), compile_cpu(int8, precision="f32")
    ratios = [_throughput(f32, batch, seconds) / _throughput(default, batch, seconds) for _ in range(rounds)]
    return float(np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="timm:deit_small_patch16_224")
    parser.add_argument("--batches", type=lambda t: tuple(int(b) for b in t.split(",")), default=(1, 8))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    loaded = load_model(args.model)
    settings = SpeedSettings(args.batches, args.seconds, args.rounds)
    rows: dict[str, Any] = {"bf16 default (float model)": {"runtime": runtime_layers(compile_cpu(loaded.model))}}
    with tempfile.TemporaryDirectory() as scratch:
        calibration = np.random.default_rng(0).standard_normal((args.calibration, *loaded.input.shape)).astype(np.float32)
        np.savez(Path(scratch) / "cal.npz", inputs=calibration)
        for label, recipe in RECIPES.items():
            result = edgeq.quantize(args.model, calibration=str(Path(scratch) / "cal.npz"), store=str(Path(scratch) / "s"),
                                    name="r", metric="cosine", max_drop=0.5, no_fallback=True, speed_seconds=0,
                                    sensitivity_samples=1, **recipe)
            int8 = ov.Core().read_model(str(result.path / "model.xml"))
            speed = compare(loaded.model, int8, loaded.input.shape, settings)
            rows[label] = {"cosine": result.report.accuracy.final, "runtime": runtime_layers(compile_cpu(int8)),
                           **{batch: {"speedup_vs_default": row.speedup_vs_default, "speedup_vs_fp32": row.speedup_vs_fp32}
                              for batch, row in speed.batches.items()}}
            if label.startswith("default"):
                batch = calibration[:1]
                rows[label]["f32_hint_over_default_hint_batch1"] = f32_hint_ratio(int8, batch, args.seconds, args.rounds)
                rows[label]["runtime_f32_hint"] = runtime_layers(compile_cpu(int8, precision="f32"))
    print(f"{'recipe':<36} {'cosine':>7} " + " ".join(f"{'INT8/BF16 b' + str(b):>13} {'INT8/FP32 b' + str(b):>13}"
                                                    for b in args.batches) + "  runtime layers")
    for label, row in rows.items():
        ratios = " ".join(f"{row[str(b)]['speedup_vs_default']:>13.2f} {row[str(b)]['speedup_vs_fp32']:>13.2f}"
                          if str(b) in row else f"{'':>13} {'':>13}" for b in args.batches)
        cosine = f"{row['cosine']:.4f}" if "cosine" in row else ""
        print(f"{label:<36} {cosine:>7} {ratios}  {row['runtime']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
