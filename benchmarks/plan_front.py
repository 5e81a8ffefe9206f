"""The speed/accuracy front of layer-group precision plans, judged on held-out samples.

    python benchmarks/plan_front.py --model vits14 --json docs/results/plans/vits14_front_CPU.json
    python benchmarks/plan_front.py --model minilm --json docs/results/plans/minilm_front_CPU.json

`edgeq quantize --plan` chooses on the job's ranking subset (300 samples by default, where one
image is a third of a point of agreement). This quantizes the plans `--plan` can build, and a few
it would not try, with edgeq's default recipe from one statistics pass, and judges each on held-out
samples (ViT-S/14 with the linear probe inside the model: top-1 agreement with FP32 on test images;
MiniLM: nearest-neighbour agreement on sentences; both with output cosine), timing every plan as
served (default float precision, THROUGHPUT hint, batch 1) beside the float default and true FP32,
alternating. The question it answers: what does each point of agreement with FP32 cost in speed on
this CPU, and which plan is the fastest at a given agreement.

The models, data and agreement measures are benchmarks/int8_ceiling.py's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgeq.compile import compile_cpu, cpu_description  # noqa: E402
from edgeq.quantization import accuracy, ptq  # noqa: E402
from edgeq.quantization.plan import group_nodes  # noqa: E402
from edgeq.quantization.recipe import Recipe  # noqa: E402
from edgeq.runtime.throughput import alternating_medians  # noqa: E402
from int8_ceiling import minilm_case, vits14_case  # noqa: E402


def plans(groups: list[str]) -> list[tuple[str, ...]]:
    """The float groups of each plan: all INT8, each group alone in float, each group alone in INT8,
    and the MLP (fc1+fc2) and the attention projections (qkv+proj) in float."""
    chosen: list[tuple[str, ...]] = [(), *((g,) for g in groups)]
    chosen += [tuple(other for other in groups if other != g) for g in groups]
    chosen += [pair for pair in (("fc1", "fc2"), ("qkv", "proj")) if set(pair) <= set(groups)]
    return list(dict.fromkeys(chosen))


def name(float_groups: tuple[str, ...], groups: list[str]) -> str:
    if not float_groups:
        return "all INT8"
    int8 = [g for g in groups if g not in float_groups]
    return "float: " + "+".join(float_groups) if len(int8) != 1 else f"only {int8[0]} INT8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["vits14", "minilm"], required=True)
    parser.add_argument("--samples", type=int, default=1000, help="held-out samples (test images or sentences)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    recipe = Recipe()
    with tempfile.TemporaryDirectory() as scratch:
        case = (vits14_case if args.model == "vits14" else minilm_case)(args, Path(scratch))
    nodes, base, fixed = group_nodes(case.model, recipe)
    groups = list(nodes)
    candidates = plans(groups)
    calibration = [case.calibration[i] for i in range(min(recipe.subset_size, len(case.calibration)))]
    (smoothed,) = ptq.smooth_many(case.model, calibration, [recipe])
    members = [(ptq.from_smoothed(recipe), sorted({*base, *(n for g in c for n in nodes[g])})) for c in candidates]
    quantized = dict(zip((name(c, groups) for c in candidates), ptq.quantize_many(smoothed, calibration, members)))
    print(f"quantized {len(quantized)} plans in {time.perf_counter() - started:.0f} s "
          f"(groups {', '.join(groups)}; in float in every plan: {', '.join(fixed) or 'nothing'})", flush=True)

    def outputs(model: ov.Model, precision: str = "default") -> np.ndarray:
        return accuracy.run(compile_cpu(model, precision=precision), case.evaluation, len(case.evaluation))

    reference = outputs(case.model, "f32")
    scored: dict[str, dict[str, float]] = {}
    for label, model in {"float default": case.model, **quantized}.items():
        result = outputs(model)
        scored[label] = {**case.agreement(result, reference),
                         "cosine": float(accuracy.per_sample("cosine", result, reference, None).mean())}
        print(f"  scored {label}: agreement {scored[label]['agreement']:.4f}", flush=True)

    batch = {0: case.evaluation[:1]}
    compiled = {"FP32": compile_cpu(case.model, precision="f32", hint="THROUGHPUT"),
                "float default": compile_cpu(case.model, hint="THROUGHPUT"),
                **{label: compile_cpu(model, hint="THROUGHPUT") for label, model in quantized.items()}}
    precision = compiled["float default"].get_property("INFERENCE_PRECISION_HINT").get_type_name()
    speed = alternating_medians(compiled, batch, args.seconds, args.rounds)
    rows = []
    for candidate in [None, *candidates]:
        label = "float default" if candidate is None else name(candidate, groups)
        rows.append({"plan": label, "float_groups": groups if candidate is None else list(candidate),
                     **scored[label], "per_s": speed[label],
                     "speedup_vs_default": speed[label] / speed["float default"],
                     "speedup_vs_fp32": speed[label] / speed["FP32"]})
    for row in rows:  # the front: no other plan is at least as fast and as faithful, and better in one
        row["on_front"] = not any(
            o["speedup_vs_default"] >= row["speedup_vs_default"] and o["agreement"] >= row["agreement"]
            and (o["speedup_vs_default"] > row["speedup_vs_default"] or o["agreement"] > row["agreement"])
            for o in rows)
    rows.sort(key=lambda r: -r["speedup_vs_default"])
    print(f"\n{args.model}: {args.samples} held-out samples, batch 1, float default = {precision}, "
          f"FP32 {speed['FP32']:.1f}/s, float default {speed['float default']:.1f}/s")
    print(f"{'plan':<44} {'agree':>7} {'top-2':>7} {'cosine':>8} {'x default':>9} {'x FP32':>7} front")
    for row in rows:
        print(f"{row['plan']:<44} {row['agreement']:>7.4f} {row['in_float_top2']:>7.4f} {row['cosine']:>8.5f} "
              f"{row['speedup_vs_default']:>9.2f} {row['speedup_vs_fp32']:>7.2f} {'*' if row['on_front'] else ''}")
    summary: dict[str, Any] = {
        "model": args.model, "samples": args.samples, "recipe": recipe.to_dict(), "fixed_float": fixed,
        "groups": {g: len(nodes[g]) for g in groups}, "float_default_precision": precision,
        "fp32_per_s": speed["FP32"], "seconds_per_round": args.seconds, "rounds": args.rounds, "batch_size": 1,
        "cpu": cpu_description(), "seconds": round(time.perf_counter() - started, 1), "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
