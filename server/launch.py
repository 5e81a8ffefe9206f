"""Start `edgeq serve` as a subprocess and learn the ports it bound (`--port 0` picks a free one).

The server announces itself on stdout ("edgeq http on HOST:PORT", "edgeq metrics on HOST:PORT"
when metrics are on, then "edgeq listening on HOST:PORT" for gRPC, last); tests, benchmarks and the
edge smoke test read that here.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any

LISTENING = "edgeq listening on {host}:{port}"
METRICS = "edgeq metrics on {host}:{port}"
HTTP = "edgeq http on {host}:{port}"
_LISTENING = re.compile(r"edgeq listening on \S+:(\d+)")
_METRICS = re.compile(r"edgeq metrics on \S+:(\d+)")
_HTTP = re.compile(r"edgeq http on \S+:(\d+)")


@dataclass
class Launched:
    process: subprocess.Popen[str]
    port: int
    metrics_port: int = 0
    http_port: int = 0


def launch(command: list[str], **popen: Any) -> Launched:
    """Run `command` (an `edgeq serve ...` line) until it announces its port; raise if it exits first."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, **popen)
    assert process.stdout is not None
    ports = {"metrics_port": 0, "http_port": 0}
    for line in process.stdout:
        for key, pattern in (("metrics_port", _METRICS), ("http_port", _HTTP)):
            found = pattern.search(line)
            if found:
                ports[key] = int(found.group(1))
        listening = _LISTENING.search(line)
        if listening:
            return Launched(process, int(listening.group(1)), **ports)
    process.wait()
    raise RuntimeError(f"the server exited with code {process.returncode} before announcing its port")
