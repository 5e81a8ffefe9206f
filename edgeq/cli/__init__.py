"""The `edgeq` command, the only face of edgeq.

- `local`: commands that need no server (quantize, models);
- `remote`: commands that run or talk to a server (serve, submit, jobs, bench, health, export);
- `demo`: the Fashion-MNIST ViT shipped with edgeq, quantized (and served).

Each module adds its own subcommands. The transport side (`edgeq_server`, grpc) is imported only
inside the commands that need it, so `edgeq quantize` runs with no gRPC loaded. A mistake a user
can make ends in one line and an exit code (`edgeq.cli.exits`); EDGEQ_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from edgeq import __version__
from edgeq._offline import disable_telemetry
from edgeq.cli import demo, exits, local, remote
from edgeq.cli.help import HelpFormatter

__all__ = ["build_parser", "main"]


EPILOG = """examples:
  edgeq demo --store demo-store --serve
  edgeq quantize --model timm:edgeq_vit_fmnist --calibration calib.npz --store ./models --name vit
  edgeq serve --store ./models

exit codes: 0 done, 1 failed (job, health, bench errors, validate), 2 usage, 3 accuracy budget not met,
  4 user error (not found, exists, unreadable, refused credentials), 5 server unreachable, 130 interrupted
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeq", description="INT8 quantization and serving of transformers on CPUs",
                                     formatter_class=HelpFormatter, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"edgeq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.add_commands(commands)
    demo.add_commands(commands)
    remote.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    disable_telemetry()  # the entry point, before any command loads OpenVINO or NNCF
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0].startswith("-") and given[0] not in ("-h", "--help", "--version"):
        parser.error(f"unrecognized arguments: {given[0]} (edgeq takes --help and --version; other flags go "
                     "after the COMMAND)")
    args = parser.parse_args(given)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except Exception as error:
        failure = exits.describe(error, getattr(args, "target", None))
        if failure is None or os.environ.get("EDGEQ_DEBUG"):
            raise
        print(f"edgeq {args.command}: error: {failure.message}", file=sys.stderr)
        return failure.code
