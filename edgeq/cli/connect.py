"""The flags every remote command shares: where the server is and how to reach it securely.

`--target`, `--ca` (TLS), `--cert`/`--key` (mTLS) and `--token-file` (the bare token; else
EDGEQ_TOKEN). `security_from_args` turns them into `edgeq_server.client.Security`, importing the
transport only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_TARGET = "127.0.0.1:8001"


def host_port(text: str) -> str:
    """HOST:PORT (or a gRPC URI such as unix:/path): a bare host would quietly mean port 443."""
    if "://" in text or text.startswith("unix:"):
        return text
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:8001")
    return text


def add_connection_flags(parser: argparse.ArgumentParser, target_help: str = "server address HOST:PORT",
                         default_target: str | None = DEFAULT_TARGET) -> None:
    group = parser.add_argument_group("connection (TLS, mTLS, tokens)")
    group.add_argument("--target", type=host_port, default=default_target, help=target_help)
    group.add_argument("--ca", metavar="PEM", help="CA certificate that signed the server's certificate: connect "
                                                   "with TLS (the server's --tls-cert)")
    group.add_argument("--tls", action="store_true", help="connect with TLS trusting the system's CAs (no --ca)")
    group.add_argument("--cert", metavar="PEM", help="client certificate for mTLS (the server's --tls-client-ca "
                                                     "signed it); needs --key")
    group.add_argument("--key", metavar="PEM", help="private key of --cert")
    group.add_argument("--token-file", metavar="FILE", help="file holding the bare bearer token (default: the "
                                                            "EDGEQ_TOKEN environment variable)")


def security_from_args(args: argparse.Namespace) -> Any:
    """edgeq_server.client.Security from the flags (raises InvalidArgument on unreadable files)."""
    from edgeq_server.client import Security

    return Security.from_files(args.ca, args.cert, args.key, args.token_file, tls=args.tls)
