"""The `edgeq` command, the only face of edgeq.

- `local`: commands that need no server (quantize, models);
- `remote`: commands that run or talk to a server (serve, submit, jobs, bench, health, export);
- `demo`: the Fashion-MNIST ViT shipped with edgeq, quantized (and served).

Each module adds its own subcommands. The transport side (`edgeq_server`, grpc) is imported only
inside the commands that need it, so `edgeq quantize` runs with no gRPC loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgeq._offline import disable_telemetry
from edgeq.cli import demo, local, remote
from edgeq.errors import EdgeqError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeq", description="INT8 quantization and serving of transformers on CPUs")
    commands = parser.add_subparsers(dest="command", required=True)
    local.add_commands(commands)
    demo.add_commands(commands)
    remote.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    disable_telemetry()  # the entry point, before any command loads OpenVINO or NNCF
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EdgeqError as error:
        print(f"edgeq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
