"""`edgeq demo`: quantize the Fashion-MNIST ViT shipped with edgeq, print its report, optionally serve it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.cli.help import add_command, existing_or_new_folder
from edgeq.cli.progress import run_with_progress
from edgeq.datasets import fashion_mnist


def demo_data(folder: Path, calibration: int = 300, validation: int = 2000) -> tuple[Path, Path]:
    """Calibration from the training split, validation from the test split (Debian's package)."""
    folder.mkdir(parents=True, exist_ok=True)
    calibration_path, validation_path = folder / "calibration.npz", folder / "validation.npz"
    train_x, train_y = fashion_mnist.load("train", limit=calibration)
    test_x, test_y = fashion_mnist.load("test", limit=validation)
    from edgeq.models import fmnist_vit

    def normalise(x: np.ndarray) -> np.ndarray:
        return ((x - fmnist_vit.MEAN[0]) / fmnist_vit.STD[0]).astype(np.float32)

    np.savez(calibration_path, inputs=normalise(train_x), labels=train_y)
    np.savez(validation_path, inputs=normalise(test_x), labels=test_y)
    return calibration_path, validation_path


def run_demo(store: Path, *, serve: bool = False, port: int = 8001) -> int:
    from edgeq.options import QuantizeOptions
    from edgeq.quantization.pipeline import QuantizeRequest
    from edgeq.report.summary import summary_lines

    calibration, validation = demo_data(store / ".demo-data")
    # a demo serves what it made (force_promote); the report still says if it is slower
    options = QuantizeOptions(metric="top1", max_drop=0.005, force_promote=True)
    request = QuantizeRequest(model="timm:edgeq_vit_fmnist", calibration=calibration, validation=validation,
                              store=store, name="vit-fmnist", options=options)
    result = run_with_progress(request)
    for line in summary_lines(result.report):
        print(line)
    print(f"published vit-fmnist version {result.version}: {result.path}")
    gate = result.report.speed_gate
    if gate and not gate.met:
        print(f"speed gate missed (INT8 x{gate.speedup_vs_default:.2f} of the float default): a real job would hold "
              "this version back; the demo serves it anyway (like `edgeq quantize --force`)")
    if serve:
        from edgeq_server.app import serve_forever

        print(f"serving {store} on 127.0.0.1:{port} (KServe v2 gRPC); Ctrl-C stops")
        serve_forever(store=store, host="127.0.0.1", port=port)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeq.cli.local import ensure_store

    ensure_store(args.store)
    return run_demo(Path(args.store), serve=args.serve, port=args.port)


def add_commands(commands: Any) -> None:
    demo = add_command(commands, "demo", "quantize the Fashion-MNIST ViT shipped with edgeq (and serve it)", [
        "edgeq demo --store demo-store", "edgeq demo --store demo-store --serve --port 8001"])
    demo.add_argument("--store", default="demo-store", type=existing_or_new_folder,
                      help="model store folder (created if missing)")
    demo.add_argument("--serve", action="store_true", help="serve it afterwards with the gRPC server")
    demo.add_argument("--port", type=int, default=8001, help="gRPC port for --serve")
    demo.set_defaults(func=cmd_demo)
