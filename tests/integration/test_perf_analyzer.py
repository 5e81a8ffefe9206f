"""Triton's perf_analyzer profiles a model served by edgeq, unmodified (ModelMetadata, ModelConfig,
ServerMetadata, ModelInfer and, because we advertise the extension, ModelStatistics)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.server_process import ServerProcess, copy_store

PERF = Path(sys.executable).parent.parent / "opt" / "perf_analyzer"


def test_perf_analyzer_profiles_a_served_model(fmnist_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = PERF / "bin" / "perf_analyzer"
    assert binary.exists(), f"perf_analyzer is not unpacked at {binary}: bash .ci/setup does it"
    server = ServerProcess(copy_store(fmnist_result.path.parent.parent, tmp_path / "store")).start()
    try:
        env = {**os.environ, "LD_LIBRARY_PATH": str(PERF / "lib")}
        # Interoperability, not a benchmark: "-s 100" accepts any stability on a busy machine.
        run = subprocess.run([str(binary), "-m", "vit-fmnist", "-u", server.target, "-i", "grpc",
                              "--concurrency-range", "1:2", "-p", "1500", "--max-trials", "4", "-s", "100"],
                             capture_output=True, text=True, env=env, timeout=180)
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-3000:]
        assert "Concurrency: 1, throughput:" in output and "Concurrency: 2, throughput:" in output
        assert "Successful request count" in output  # read from our ModelStatistics
    finally:
        assert server.stop() == 0
