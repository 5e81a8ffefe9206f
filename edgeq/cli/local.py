"""CLI commands that need no server: quantize (in this process) and models (a local store, or a
server's with --target)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeq.cli import exits
from edgeq.cli.connect import add_connection_flags, security_from_args
from edgeq.cli.flags import add_job_arguments, add_option_flags, options_from_flags
from edgeq.cli.help import add_command, existing_or_new_folder
from edgeq.cli.progress import run_with_progress
from edgeq.errors import FailedPrecondition, InvalidArgument, NotFound


def request_from_args(args: argparse.Namespace) -> Any:
    from edgeq.quantization.pipeline import QuantizeRequest

    return QuantizeRequest(model=args.model, weights=args.weights, calibration=args.calibration,
                           validation=args.validation, store=args.store, name=args.name,
                           options=options_from_flags(args))


def ensure_store(path: str) -> None:
    """Create a store folder for a command that writes one, before any work starts."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FailedPrecondition(f"cannot create the store folder {path}: {error.strerror}") from None


def cmd_quantize(args: argparse.Namespace) -> int:
    from edgeq.report.summary import summary_lines

    ensure_store(args.store)
    result = run_with_progress(request_from_args(args))
    for line in summary_lines(result.report):
        print(line)
    print(f"published {result.name} version {result.version} at {result.path}")
    if not result.served:
        print(f"held back from serving by the speed gate; serve it anyway: "
              f"edgeq models promote {result.name} --version {result.version} --store {args.store}")
    print(f"report: {result.path / 'report.html'}")
    return exits.OK if result.budget_met else exits.BUDGET_NOT_MET


def _row(name: str, version: int, held: str | None, report: dict[str, Any],
         serves: dict[str, Any] | None = None) -> dict[str, Any]:
    """`serves`: which IR the store's server loads, and why."""
    from edgeq.report.model import Report

    read = Report.read(report)
    acc = read.accuracy if read else None
    return {"name": name, "version": version, "held": held or None, "metric": acc and acc.metric,
            "float": acc and acc.float, "int8": acc and acc.final, "met": acc and acc.met,
            "source": read and read.model.source, "serves": serves}


def _serves(info: Any) -> dict[str, Any]:
    """The IR a local store's server loads for `info` (edgeq.store.VersionInfo), with the recorded choice."""
    return {"ir": info.served_ir, "float_ir": info.has_float, **{k: v for k, v in (info.serve_choice() or {}).items()
                                                                  if k != "ir"}}


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        score = f"{row['metric']} {row['float']:.4f} -> {row['int8']:.4f}" if row["metric"] else ""
        held = f"  HELD: {row['held']}" if row["held"] else ""
        serves = row.get("serves")
        ir = f"  serves {serves['ir']}" + (f" ({serves['why']})" if serves.get("why") else "") if serves else ""
        if row["metric"] is None:  # a report of another schema (an older edgeq): nothing of it can be trusted
            verdict = "report unreadable by this edgeq (another report schema)"
        else:
            verdict = "ok" if row["met"] else "BUDGET NOT MET"
        parts = [f"{row['name']}:{row['version']}", score, verdict, row["source"] or ""]
        print("  ".join(part for part in parts if part) + held + ir)


def _models_on_server(args: argparse.Namespace) -> int:
    """list, show and promote through the server's Models API."""
    from edgeq_server.client import EdgeqClient
    from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb

    if args.action not in ("list", "show", "promote"):
        raise InvalidArgument(f"edgeq models {args.action} works on a local store: give --store, not --target")
    with EdgeqClient(args.target, security=security_from_args(args)) as client:
        if args.action == "list":
            rows = [_row(model.name, v.version, v.held_reason, json.loads(v.report_json) if v.report_json else {},
                         {"ir": v.served_ir, "float_ir": v.has_float_ir, **({"why": v.ir_choice} if v.ir_choice else {})})
                    for model in client.models.List(pb.ListModelsRequest()).models for v in model.versions]
            _print_rows(rows, args.json)
        elif args.action == "show":
            print(json.dumps(client.report(args.model, args.version or 0), indent=2))
        else:
            info = client.models.Promote(pb.ModelRef(name=args.model, version=args.version))
            print(f"{info.name} version {args.version} promoted: the server serves it")
    return exits.OK


def cmd_models(args: argparse.Namespace) -> int:
    if args.action in ("show", "promote") and not args.model:
        raise InvalidArgument(f"edgeq models {args.action} NAME: give the model name")
    if args.action == "promote" and not args.version:
        raise InvalidArgument("edgeq models promote NAME --version N")
    if args.action == "import" and not args.model:
        raise InvalidArgument("edgeq models import BUNDLE.edgeq.tar --store DIR")
    if args.target and args.store:
        raise InvalidArgument("give --store DIR (a local store) or --target HOST:PORT (a server), not both")
    if args.target:
        return _models_on_server(args)
    if not args.store:
        raise InvalidArgument(f"edgeq models {args.action}: give --store DIR (a local store) or --target HOST:PORT")
    from edgeq.store import ModelStore

    if args.action != "import" and not Path(args.store).is_dir():
        raise NotFound(f"no model store at {args.store} (edgeq quantize --store DIR creates one)")
    store = ModelStore(args.store)
    if args.action == "list":
        _print_rows([_row(name, info.version, info.held(), info.report(), _serves(info))
                     for name in store.names() for info in store.versions(name)], args.json)
        return exits.OK
    if args.action == "show":
        info = store.get(args.model, args.version)
        print(json.dumps(info.report(), indent=2))
        return exits.OK
    if args.action == "import":
        return _import(store, args)
    if args.action == "promote":
        info = store.promote(args.model, args.version)
        print(f"{info.name} version {info.version} promoted: servers of this store load it on their next refresh")
        return exits.OK
    problems = store.validate()
    for problem in problems:
        print(problem)
    return exits.FAILED if problems else exits.OK


def _import(store: Any, args: argparse.Namespace) -> int:
    """Verify and publish a bundle, measuring here which IR to serve (edgeq.runtime.choice); one line says
    what was decided. Re-importing an identical bundle keeps the recorded choice unless --choose is given."""
    from edgeq.runtime.choice import Mode, choose, summary
    from edgeq.store.bundle import import_bundle

    if args.choose and args.no_measure:
        raise InvalidArgument("give --choose int8|float or --no-measure, not both")
    if not 0 < args.measure_seconds <= 60:
        raise InvalidArgument(f"--measure-seconds {args.measure_seconds}: give 0 < seconds <= 60")
    mode: Mode = args.choose or ("none" if args.no_measure else "measure")
    imported: list[Path] = []

    def decide(folder: Path) -> dict[str, Any]:
        imported.append(folder)
        return choose(folder, mode, seconds=args.measure_seconds)

    info = import_bundle(store, Path(args.model), args.name, decide)
    if not imported and args.choose and (info.serve_choice() or {}).get("ir") != args.choose:
        info = store.record_serve_choice(info, choose(info.path, args.choose))
    again = "" if imported else " (already there)"
    print(f"imported {info.name} version {info.version} into {args.store}{again}: "
          f"{summary(info.serve_choice() or {'why': 'no choice recorded'})}")
    return exits.OK


def add_commands(commands: Any) -> None:
    quantize = add_command(commands, "quantize", "quantize a model into the store (no server needed)", [
        "edgeq quantize --model timm:edgeq_vit_fmnist --calibration calib.npz --store ./models --name vit",
        "edgeq quantize --model model.onnx --calibration images.tar --validation val.tar --metric top1 "
        "--max-drop 0.005 --store ./models --name vit-s"])
    quantize.add_argument("--store", required=True, type=existing_or_new_folder,
                          help="model store folder (created if missing)")
    add_job_arguments(quantize)
    add_option_flags(quantize)
    quantize.set_defaults(func=cmd_quantize)

    models = add_command(commands, "models", "list, show, validate, import or promote models in a store or on a server", [
        "edgeq models list --store ./models", "edgeq models show vit --version 2 --store ./models",
        "edgeq models import vit-1.edgeq.tar --store /var/lib/edgeq/models",
        "edgeq models promote vit --version 2 --store ./models",
        "edgeq models list --target quantizer:8001 --ca ca.pem --token-file token"])
    models.add_argument("action", choices=["list", "show", "validate", "import", "promote"], help="what to do")
    models.add_argument("model", nargs="?", help="model name (show, promote) or bundle file (import)")
    models.add_argument("--name", help="import under this name instead of the bundle's")
    models.add_argument("--version", type=int, help="version (show: default the latest; promote: required)")
    models.add_argument("--store", type=existing_or_new_folder, help="local model store folder")
    models.add_argument("--json", action="store_true", help="list as JSON")
    serving = models.add_argument_group("import: which IR to serve (default: measure INT8 and float on this CPU, "
                                        "serve the faster within the version's speed gate)")
    serving.add_argument("--choose", choices=["int8", "float"], help="serve this IR without measuring")
    serving.add_argument("--no-measure", action="store_true", help="serve INT8 without measuring (recorded as such)")
    serving.add_argument("--measure-seconds", type=float, default=1.0,
                         help="seconds per IR in each of 3 alternating rounds (default: 1.0)")
    add_connection_flags(models, "a server's models instead of a local store (HOST:PORT)", default_target=None)
    models.set_defaults(func=cmd_models)
