"""Warnings logged at start-up for settings that work but expose the server.

`ServerConfig` refuses the settings that are never safe; these are allowed on purpose (a trusted
network, a TLS-terminating proxy in front) but an operator should see them in the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeq_server.app import ServerConfig

log = logging.getLogger("edgeq.server")


def insecure_settings(config: "ServerConfig") -> list[str]:
    """What is exposed with this ServerConfig, one sentence each (empty: nothing)."""
    warnings = []
    address = f"{config.host}:{config.port}"
    tls = bool(config.tls_cert)
    if config.token_file and not tls:
        warnings.append(f"bearer tokens from {config.token_file} travel in clear text: {address} has no TLS "
                        "(--tls-cert/--tls-key), so anyone who can see the traffic can read and reuse them")
    if config.insecure:
        if not tls and not config.token_file:
            warnings.append(f"--insecure: {address} accepts every caller without TLS or tokens: anyone who can reach "
                            "it can upload models, run jobs and delete versions")
        elif not tls:
            warnings.append(f"--insecure: {address} accepts plaintext connections; requests and answers are not encrypted")
        else:
            warnings.append("--insecure is set but has no effect: TLS is on")
    return warnings


def warn_insecure_settings(config: "ServerConfig") -> list[str]:
    """Log each warning of `insecure_settings` at WARNING; return them."""
    warnings = insecure_settings(config)
    for warning in warnings:
        log.warning("%s", warning)
    return warnings
