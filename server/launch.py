"""Start `edgeq serve` as a subprocess and learn the ports it bound (`--port 0` picks a free one).

The server announces itself on stdout ("edgeq listening on HOST:PORT", and "edgeq metrics on
HOST:PORT" first when metrics are on); tests, benchmarks and the edge smoke test read that here.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any

LISTENING = "edgeq listening on {host}:{port}"
METRICS = "edgeq metrics on {host}:{port}"
_LISTENING = re.compile(r"edgeq listening on \S+:(\d+)")
_METRICS = re.compile(r"edgeq metrics on \S+:(\d+)")


@dataclass
class Launched:
    process: subprocess.Popen[str]
    port: int
    metrics_port: int = 0


def launch(command: list[str], **popen: Any) -> Launched:
    """Run `command` (an `edgeq serve ...` line) until it announces its port; raise if it exits first."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, **popen)
    assert process.stdout is not None
    metrics_port = 0
    for line in process.stdout:
        metrics = _METRICS.search(line)
        if metrics:
            metrics_port = int(metrics.group(1))
        listening = _LISTENING.search(line)
        if listening:
            return Launched(process, int(listening.group(1)), metrics_port)
    process.wait()
    raise RuntimeError(f"the server exited with code {process.returncode} before announcing its port")
