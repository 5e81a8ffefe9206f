"""CLI commands that need no server: quantize (in this process) and models (a local store)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeq.cli.flags import add_job_arguments, add_option_flags, options_from_flags
from edgeq.cli.progress import run_with_progress
from edgeq.errors import InvalidArgument


def request_from_args(args: argparse.Namespace) -> Any:
    from edgeq.quantization.pipeline import QuantizeRequest

    return QuantizeRequest(model=args.model, weights=args.weights, calibration=args.calibration,
                           validation=args.validation, store=args.store, name=args.name,
                           options=options_from_flags(args))


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
    add_job_arguments(quantize)
    add_option_flags(quantize)
    quantize.set_defaults(func=cmd_quantize)

    models = commands.add_parser("models", help="list, show, validate, import or promote models in a store")
    models.add_argument("action", choices=["list", "show", "validate", "import", "promote"])
    models.add_argument("model", nargs="?", help="model name (show) or bundle file (import)")
    models.add_argument("--name", help="import under this name instead of the bundle's")
    models.add_argument("--version", type=int)
    models.add_argument("--store", required=True)
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)
