"""Start `edgeq serve` as users do (a subprocess) on a free port and talk to it over 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from edgeq_server.launch import launch

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, store: Path, *extra: str, launcher: tuple[str, ...] = ()):
        self.store = store
        self.extra = extra
        self.launcher = launcher  # e.g. ("taskset", "-c", "0") to confine the server
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0
        self.log = store.parent / f"{store.name}-server.log"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> "ServerProcess":
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(self.log, "a")
        try:
            launched = launch([*self.launcher, sys.executable, "-m", "edgeq.cli", "serve", "--store", str(self.store), "--port", "0",
                               "--http-port", "0", "--create", *self.extra], stderr=log, cwd=ROOT, env=env)
        except RuntimeError as error:
            raise RuntimeError(f"{error}: {self.log.read_text()[-3000:]}") from None
        self.process, self.port, self.metrics_port = launched.process, launched.port, launched.metrics_port
        self.http_port = launched.http_port
        return self

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target, options=[("grpc.max_receive_message_length", 64 << 20),
                                                           ("grpc.max_send_message_length", 256 << 20)])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would; the job worker dies with it (PR_SET_PDEATHSIG)."""
        self.stop(signal.SIGKILL)


def copy_store(source: Path, target: Path) -> Path:
    """A copy of a store with only its published versions."""
    target.mkdir(parents=True, exist_ok=True)
    for model in source.iterdir():
        if model.is_dir() and not model.name.startswith("."):
            shutil.copytree(model, target / model.name)
    return target
