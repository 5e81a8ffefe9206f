"""CLI commands that need no server: quantize (in this process) and models (a local store)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeq.cli.progress import run_with_progress
from edgeq.errors import InvalidArgument


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _add_quantize_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="timm:NAME, model.onnx or model.xml (OpenVINO IR)")
    parser.add_argument("--weights", help="safetensors weights for a timm model")
    parser.add_argument("--calibration", required=True, help=".npz (inputs, labels) or image archive (.tar/.zip)")
    parser.add_argument("--validation", help="validation set; without it part of the calibration set is held out")
    parser.add_argument("--name", required=True, help="model name in the store")
    parser.add_argument("--input-shape", help="input shape without batch, e.g. 3,224,224")
    parser.add_argument("--image-size", help="preprocessing size H,W for image archives")
    parser.add_argument("--mean", type=_floats, help="per-channel mean, e.g. 0.485,0.456,0.406")
    parser.add_argument("--std", type=_floats, help="per-channel std")
    parser.add_argument("--output-node", help="cut the graph here (e.g. backbone features)")
    parser.add_argument("--metric", default="agreement", choices=["agreement", "top1", "cosine"])
    parser.add_argument("--max-drop", type=float, default=0.01, help="accuracy budget (0.005 = 0.5 points)")
    parser.add_argument("--relative", action="store_true", help="--max-drop is relative to the float score")
    parser.add_argument("--preset", default="performance", choices=["performance", "mixed"])
    parser.add_argument("--rule", action="append", dest="rules",
                        help="ignored-scope rule (repeatable): layernorm, softmax, attention, head, type:OP, name:REGEX, "
                             "subgraph:IN->OUT; default: layernorm and softmax")
    parser.add_argument("--subset-size", type=int, default=300)
    parser.add_argument("--smooth-quant-alpha", type=float, help="SmoothQuant alpha; negative turns it off")
    parser.add_argument("--no-transformer", action="store_true", help="do not use NNCF's transformer model type")
    parser.add_argument("--time-budget", type=float, default=600, help="seconds for accuracy control")
    parser.add_argument("--max-iterations", type=int, default=30, help="accuracy-control iterations cap")
    parser.add_argument("--ranking-subset", type=int, help="samples used to rank layers in accuracy control")
    parser.add_argument("--no-fallback", action="store_true", help="never run accuracy control")
    parser.add_argument("--validation-limit", type=int, default=10_000)
    parser.add_argument("--speed-seconds", type=float, default=1.0, help="seconds per speed round (0: skip)")
    parser.add_argument("--batch-sizes", default="1", help="batch sizes for the speed table, e.g. 1,8")
    parser.add_argument("--min-speedup", type=float, default=1.1,
                        help="speed gate vs the default float model: a slower INT8 version is stored but not served")
    parser.add_argument("--force", action="store_true", help="serve the version even if it misses the speed gate")
    parser.add_argument("--auto", action="store_true", help="try a few recipes on a ranking subset, keep the best")
    parser.add_argument("--ranking-samples", type=int, default=300, help="subset size for --auto")
    parser.add_argument("--search-calibration", type=int, default=100,
                        help="--auto's first round: calibration samples per candidate (finalists get them all)")


def request_from_args(args: argparse.Namespace) -> Any:
    from edgeq.quantization.accuracy import Budget
    from edgeq.quantization.fallback import FallbackSettings
    from edgeq.quantization.pipeline import QuantizeRequest
    from edgeq.quantization.recipe import Recipe
    from edgeq.quantization.speed import SpeedSettings
    from edgeq.sources.spec import Preprocess, parse_shape

    preprocess = None
    if args.image_size or args.mean or args.std:
        size = parse_shape(args.image_size) if args.image_size else None
        if size is None or len(size) != 2:
            raise InvalidArgument("--image-size H,W is needed with --mean/--std")
        channels = len(args.mean or args.std or (0, 0, 0))
        preprocess = Preprocess(size=(size[0], size[1]), channels=channels,
                                mean=args.mean or (0.0,) * channels, std=args.std or (1.0,) * channels)
    recipe = Recipe(
        preset=args.preset, transformer=not args.no_transformer,
        rules=tuple(args.rules) if args.rules else Recipe().rules, subset_size=args.subset_size,
        smooth_quant_alpha=args.smooth_quant_alpha,
    )
    return QuantizeRequest(
        model=args.model, weights=args.weights, calibration=args.calibration, validation=args.validation,
        store=args.store, name=args.name, input_shape=parse_shape(args.input_shape) if args.input_shape else None,
        preprocess=preprocess, output_node=args.output_node, metric=args.metric,
        budget=Budget(args.max_drop, args.relative), recipe=recipe,
        fallback=None if args.no_fallback else FallbackSettings(args.time_budget, args.max_iterations, args.ranking_subset),
        validation_limit=args.validation_limit,
        speed=SpeedSettings(tuple(int(b) for b in args.batch_sizes.split(",")), args.speed_seconds)
        if args.speed_seconds > 0 else None,
        min_speedup=args.min_speedup, force_promote=args.force, auto=args.auto, ranking_samples=args.ranking_samples,
        search_calibration=args.search_calibration,
    )


def cmd_quantize(args: argparse.Namespace) -> int:
    from edgeq.report.summary import summary_lines

    result = run_with_progress(request_from_args(args))
    for line in summary_lines(result.report):
        print(line)
    print(f"published {result.name} version {result.version} at {result.path}")
    if not result.served:
        print(f"held back from serving by the speed gate; serve it anyway: "
              f"edgeq models promote {result.name} --version {result.version} --store {args.store}")
    print(f"report: {result.path / 'report.html'}")
    return 0 if result.budget_met else 3


def cmd_models(args: argparse.Namespace) -> int:
    from edgeq.store import ModelStore

    store = ModelStore(args.store)
    if args.action == "list":
        rows = []
        for name in store.names():
            for info in store.versions(name):
                report = info.report()
                acc = report.get("accuracy", {})
                rows.append({"name": name, "version": info.version, "held": info.held(), "metric": acc.get("metric"),
                             "float": acc.get("float"), "int8": acc.get("final"), "met": acc.get("met"),
                             "source": report.get("model", {}).get("source")})
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                score = f"{row['metric']} {row['float']:.4f} -> {row['int8']:.4f}" if row["metric"] else ""
                held = f"  HELD: {row['held']}" if row["held"] else ""
                print(f"{row['name']}:{row['version']}  {score}  {'ok' if row['met'] else 'BUDGET NOT MET'}  "
                      f"{row['source']}{held}")
        return 0
    if args.action == "show":
        info = store.get(args.model, args.version)
        print(json.dumps(info.report(), indent=2))
        return 0
    if args.action == "import":
        from edgeq.store.bundle import import_bundle

        info = import_bundle(store, Path(args.model), args.name)
        print(f"imported {info.name} version {info.version} into {args.store}")
        return 0
    if args.action == "promote":
        if not args.model or not args.version:
            raise InvalidArgument("edgeq models promote NAME --version N")
        info = store.promote(args.model, args.version)
        print(f"{info.name} version {info.version} promoted: servers of this store load it on their next refresh")
        return 0
    if args.action == "validate":
        problems = store.validate()
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    return 2


def add_commands(commands: Any) -> None:
    quantize = commands.add_parser("quantize", help="quantize a model into the store (no server needed)")
    quantize.add_argument("--store", required=True)
    _add_quantize_options(quantize)
    quantize.set_defaults(func=cmd_quantize)

    models = commands.add_parser("models", help="list, show, validate, import or promote models in a store")
    models.add_argument("action", choices=["list", "show", "validate", "import", "promote"])
    models.add_argument("model", nargs="?", help="model name (show) or bundle file (import)")
    models.add_argument("--name", help="import under this name instead of the bundle's")
    models.add_argument("--version", type=int)
    models.add_argument("--store", required=True)
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)
