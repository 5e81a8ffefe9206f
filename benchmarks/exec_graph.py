"""What the CPU plugin really runs for each quantization recipe: read from `get_runtime_model()`.

    python benchmarks/exec_graph.py --json docs/results/exec_graph/recipes_deit_s_fmnist_CPU.json
    python benchmarks/exec_graph.py --models deit_t --recipes ln_softmax,attention_float
    python benchmarks/exec_graph.py --models deit_s --time --json docs/results/exec_graph/recipes_deit_s_timed_CPU.json

Every recipe is quantized in-process (edgeq's NNCF adapter, the ignored scope resolved by edgeq's
rules, as a job does), compiled on CPU at the default precision hint, and the runtime graph is
counted: what layer types run at which precision, where each activation FakeQuantize of the IR
ended up (standalone, or fused into an MVN, FullyConnected, Eltwise, ... node), the Reorders, and
where SmoothQuant's Multiplies went. Accuracy against true FP32 comes from edgeq's own analysis
functions (`accuracy.per_sample`, `sensitivity.per_layer_sqnr`); on the Fashion-MNIST ViT (trained
weights, real test images) also labelled top-1.

Random-init timm models get seeded LayerNorm weights and biases (scale ~1 +- 0.1, shift ~0 +- 0.1)
so that their graphs keep LayerNorm's affine Multiply/Add as trained models have it (a LayerNorm
with weight 1 and bias 0 converts to a bare MVN).

`--time` runs OpenVINO's `benchmark_app` (THROUGHPUT hint, batch 1 and 8) on the float model at
the default precision, at f32, and on every recipe's INT8 IR, alternating in rounds; never run it
on a machine that others are measuring on.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from edgeq.compile import compile_cpu, cpu_description
from edgeq.quantization import accuracy, rules, sensitivity
from edgeq.quantization.nncf_adapter import quantize
from edgeq.quantization.plugin_graph import runtime_table
from edgeq.quantization.recipe import Recipe
from edgeq.sources import load_model

MODELS = {
    "deit_s": "timm:deit_small_patch16_224",
    "deit_t": "timm:deit_tiny_patch16_224",
    "fmnist": "timm:edgeq_vit_fmnist",
}
# Candidate recipes as edgeq Recipe fields (everything else edgeq's defaults); the JSON marks the one equal to Recipe().
LN_SOFTMAX = ("layernorm", "softmax")
LN_SOFTMAX_ATTENTION = ("layernorm", "softmax", "attention")
RECIPES: dict[str, dict[str, Any]] = {
    "ln_softmax": dict(rules=LN_SOFTMAX),
    "no_ignored_scope": dict(rules=()),
    "ln_softmax_sq_off": dict(rules=LN_SOFTMAX, smooth_quant_alpha=-1.0),
    "attention_float": dict(rules=LN_SOFTMAX_ATTENTION),
    "attention_float_sq_off": dict(rules=LN_SOFTMAX_ATTENTION, smooth_quant_alpha=-1.0),
    "ln_softmax_mixed": dict(rules=LN_SOFTMAX, preset="mixed"),
    "ln_softmax_not_transformer": dict(rules=LN_SOFTMAX, transformer=False),
}


@dataclass
class Sample:
    inputs: np.ndarray  # (N, C, H, W) float32, preprocessed
    labels: np.ndarray | None


def with_layernorm_affine(name: str, scratch: Path) -> Path:
    """Seeded non-trivial LayerNorm weights/biases for a random-init timm model (safetensors)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.weight.data = 1 + 0.1 * torch.randn(module.weight.shape, generator=generator)
            module.bias.data = 0.1 * torch.randn(module.bias.shape, generator=generator)
    path = scratch / f"{name}-ln.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def samples(key: str, shape: tuple[int, ...], count: int, split: str) -> Sample:
    """Fashion-MNIST images for the trained ViT; seeded noise for random-init models."""
    if key == "fmnist":
        from edgeq.datasets import fashion_mnist
        from edgeq.models import fmnist_vit

        images, labels = fashion_mnist.load(split, limit=count)
        images = (images - np.float32(fmnist_vit.MEAN[0])) / np.float32(fmnist_vit.STD[0])
        return Sample(images.astype(np.float32), labels)
    rng = np.random.default_rng(0 if split == "train" else 1)
    return Sample(rng.standard_normal((count, *shape)).astype(np.float32), None)


def scores(float_model: ov.Model, int8: ov.Model, data: Sample, reference: np.ndarray, sqnr_inputs: int) -> dict[str, Any]:
    outputs = accuracy.run(compile_cpu(int8), data.inputs, len(data.inputs))
    result: dict[str, Any] = {
        "agreement_with_fp32": float(accuracy.per_sample("agreement", outputs, reference, None).mean()),
        "cosine_with_fp32": float(accuracy.per_sample("cosine", outputs, reference, None).mean()),
    }
    if data.labels is not None:
        result["top1"] = float(accuracy.per_sample("top1", outputs, reference, data.labels).mean())
        result["top1_fp32"] = float(accuracy.per_sample("top1", reference, reference, data.labels).mean())
    layers = [op.get_friendly_name() for op in float_model.get_ops() if op.get_type_name() == "MatMul"]
    sqnr = sensitivity.per_layer_sqnr(float_model, int8, layers, data.inputs[:sqnr_inputs])
    finite = [v for v in sqnr.values() if np.isfinite(v)]
    result["sqnr_db_min"] = round(min(finite), 2) if finite else None
    result["sqnr_db_median"] = round(float(np.median(finite)), 2) if finite else None
    return result


def benchmark_app(xml: Path, batch: int, seconds: int, hint: str | None) -> float:
    """Throughput (FPS) benchmark_app reports for `xml` at `batch`; `hint` sets INFERENCE_PRECISION_HINT."""
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    dims = [batch, *(d.get_length() for d in list(ov.Core().read_model(str(xml)).input(0).get_partial_shape())[1:])]
    shape = "[" + ",".join(str(d) for d in dims) + "]"
    command = [tool, "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-shape", shape, "-t", str(seconds)]
    if hint:
        command += ["-infer_precision", hint]
    run = subprocess.run(command, check=True, capture_output=True, text=True)
    text = run.stdout + run.stderr  # benchmark_app logs through `logging`
    found = re.search(r"Throughput:\s+([\d.]+)\s+FPS", text)
    if found is None:
        raise RuntimeError(f"benchmark_app printed no throughput for {xml}:\n{text[-2000:]}")
    return float(found.group(1))


def timings(irs: dict[str, Path], batches: tuple[int, ...], seconds: int, rounds: int) -> dict[str, Any]:
    """benchmark_app FPS per IR and batch, alternating IRs within each round; medians and ratios
    to the float model at the default precision and at f32."""
    runs: dict[str, dict[int, list[float]]] = {label: {b: [] for b in batches} for label in irs}
    for _ in range(rounds):
        for batch in batches:
            for label, xml in irs.items():
                hint = "f32" if label == "float_f32" else None
                runs[label][batch].append(benchmark_app(xml, batch, seconds, hint))
    result: dict[str, Any] = {}
    for label in irs:
        result[label] = {}
        for batch in batches:
            fps = float(np.median(runs[label][batch]))
            result[label][str(batch)] = {
                "fps": round(fps, 1), "runs": runs[label][batch],
                "vs_float_default": round(fps / float(np.median(runs["float_default"][batch])), 3),
                "vs_float_f32": round(fps / float(np.median(runs["float_f32"][batch])), 3)}
    return result


def run_model(key: str, recipe_names: list[str], args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    source = MODELS[key]
    weights = with_layernorm_affine(source.split(":", 1)[1], scratch) if key != "fmnist" else None
    loaded = load_model(source, weights=weights)
    float_model = loaded.model
    calibration = samples(key, tuple(loaded.input.shape), args.calibration, "train")
    data = samples(key, tuple(loaded.input.shape), args.samples, "test")
    reference = accuracy.run(compile_cpu(float_model, precision="f32"), data.inputs, len(data.inputs))
    float_xml = scratch / key / "float.xml"
    ov.save_model(float_model, str(float_xml), compress_to_fp16=False)
    out: dict[str, Any] = {"source": source, "layernorm_affine": weights is not None, "recipes": {},
                           "float_default": runtime_table(float_model, compile_cpu(float_model)),
                           "float_f32": runtime_table(float_model, compile_cpu(float_model, precision="f32"))}
    bf16 = accuracy.run(compile_cpu(float_model), data.inputs, len(data.inputs))
    out["float_default"]["accuracy"] = {"agreement_with_fp32": float(accuracy.per_sample("agreement", bf16, reference, None).mean()),
                                        "cosine_with_fp32": float(accuracy.per_sample("cosine", bf16, reference, None).mean())}
    irs = {"float_default": float_xml, "float_f32": float_xml}
    for label in recipe_names:
        recipe = Recipe(subset_size=args.calibration, **RECIPES[label])
        ignored = rules.ignored_names(rules.resolve(float_model, rules.parse_rules(list(recipe.rules))))
        int8 = quantize(float_model, list(calibration.inputs), recipe, ignored)
        xml = scratch / key / f"{label}.xml"
        ov.save_model(int8, str(xml), compress_to_fp16=False)
        irs[label] = xml
        row = {"recipe": recipe.to_dict(), "edgeq_default": recipe == Recipe(subset_size=args.calibration),
               "ignored": len(ignored),
               **runtime_table(int8, compile_cpu(int8)),
               "f32_hint": runtime_table(int8, compile_cpu(int8, precision="f32"))["summary"],
               "accuracy": scores(float_model, int8, data, reference, args.sqnr_samples)}
        out["recipes"][label] = row
        print(f"  {key} {label}: {row['summary']} {row['accuracy']}", flush=True)
    if args.time:
        out["benchmark_app"] = timings(irs, args.batches, args.seconds, args.rounds)
    return out


def print_table(results: dict[str, Any]) -> None:
    columns = ("standalone_fq", "reorders", "eltwise", "fc_int8", "fc_float", "attention_int8", "attention_float")
    for key, model in results["models"].items():
        print(f"\n{model['source']}")
        print(f"{'recipe (* edgeq default)':<30}" + "".join(f"{c:>16}" for c in columns) + f"{'FQ held by':>12}  accuracy")
        rows = {"float (default)": model["float_default"],
                **{label + (" *" if row["edgeq_default"] else ""): row for label, row in model["recipes"].items()}}
        for label, row in rows.items():
            acc = row.get("accuracy", {})
            text = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in acc.items())
            print(f"{label:<30}" + "".join(f"{row['summary'][c]:>16}" for c in columns)
                  + f"  {row.get('activation_fq_held_by', {})}  {text}")
        for label, by_batch in model.get("benchmark_app", {}).items():
            print(f"  benchmark_app {label}: " + ", ".join(
                f"b{b} {v['fps']} FPS (x{v['vs_float_default']} default, x{v['vs_float_f32']} f32)" for b, v in by_batch.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="deit_s,fmnist", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated: {', '.join(RECIPES)}")
    parser.add_argument("--calibration", type=int, default=32, help="calibration samples (fmnist: the first training images)")
    parser.add_argument("--samples", type=int, default=300, help="samples scored against FP32")
    parser.add_argument("--sqnr-samples", type=int, default=4)
    parser.add_argument("--time", action="store_true", help="add benchmark_app throughput per recipe (slow; exclusive machine)")
    parser.add_argument("--batches", type=lambda t: tuple(int(b) for b in t.split(",")), default=(1, 8))
    parser.add_argument("--seconds", type=int, default=10, help="benchmark_app -t per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    unknown = [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}; choose from {list(RECIPES)}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    results: dict[str, Any] = {"command": " ".join(sys.argv), "commit": commit,
                               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "cpu": cpu_description(), "nncf": _nncf_version(), "models": {}}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for key in args.models.split(","):
            (scratch / key).mkdir()
            results["models"][key] = run_model(key, args.recipes.split(","), args, scratch)
    print_table(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str))


def _nncf_version() -> str:
    from importlib import metadata

    return metadata.version("nncf")


if __name__ == "__main__":
    main()
