"""The server, started as users start it, against real clients: tritonclient, our stubs, health, reflection."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edgeq_server.gen.edgeq.v1 import edgeq_pb2, edgeq_pb2_grpc
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import fmnist_arrays
from tests.integration.server_process import ServerProcess, copy_store

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def served(fmnist_result, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One server for the tests that only read: none of them changes what it serves."""
    store = copy_store(fmnist_result.path.parent.parent, tmp_path_factory.mktemp("served") / "store")
    server = ServerProcess(store, "--metrics-port", "0").start()
    yield server
    assert server.stop() == 0, "SIGTERM must end the server cleanly (exit 0)"


@pytest.fixture
def own_server(fmnist_result, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A server of its own for a test that changes what is served (unload, load, publish)."""
    server = ServerProcess(copy_store(fmnist_result.path.parent.parent, tmp_path / "store")).start()
    yield server
    assert server.stop() == 0, "SIGTERM must end the server cleanly (exit 0)"


@pytest.fixture(scope="module")
def stub(served: ServerProcess) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(served.channel())


def _in_process_int8(path: Path, inputs: np.ndarray) -> np.ndarray:
    from edgeq.compile import compile_cpu
    from edgeq.quantization import accuracy

    import openvino as ov

    return accuracy.run(compile_cpu(ov.Core().read_model(str(path / "model.xml"))), inputs, len(inputs))


def test_tritonclient_unmodified(served: ServerProcess, fmnist_result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inputs, _ = fmnist_arrays()
    np.savez(tmp_path / "in.npz", inputs=inputs[:8])
    run = subprocess.run([sys.executable, str(HERE / "triton_check.py"), served.target, "vit-fmnist",
                          str(tmp_path / "in.npz"), str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["live"] and summary["ready"] and summary["model_ready"] and not summary["unknown_ready"]
    assert summary["metadata"]["inputs"][0]["shape"] == ["-1", "1", "28", "28"]
    assert summary["config"]["max_batch_size"] == 64 and summary["config"]["input"][0]["dims"] == ["1", "28", "28"]
    assert summary["sync_id"] == "req-1" and summary["sync_version"] == "1"
    assert len(summary["stream_errors"]) == 1 and "no-such-model" in summary["stream_errors"][0]
    assert "statistics" in summary["server"]["extensions"]
    assert int(summary["stats"]["model_stats"][0]["inference_count"]) >= 12
    outputs = np.load(tmp_path / "out.npz")
    expected = _in_process_int8(fmnist_result.path, inputs[:8])
    np.testing.assert_allclose(outputs["sync"], expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(outputs["async_"], expected[:1], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(outputs["stream"], expected[:3], rtol=1e-3, atol=1e-3)


def _request(inputs: np.ndarray, model: str = "vit-fmnist", name: str = "x", datatype: str = "FP32") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="r")
    request.inputs.add(name=name, datatype=datatype, shape=list(inputs.shape))
    request.raw_input_contents.append(inputs.tobytes())
    return request


def test_typed_contents_are_accepted(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    inputs, _ = fmnist_arrays()
    typed = pb.ModelInferRequest(model_name="vit-fmnist")
    tensor = typed.inputs.add(name="x", datatype="FP32", shape=[1, 1, 28, 28])
    tensor.contents.fp32_contents.extend(inputs[0].ravel().tolist())
    raw = stub.ModelInfer(_request(inputs[:1]))
    answer = stub.ModelInfer(typed)
    assert answer.raw_output_contents[0] == raw.raw_output_contents[0]


def _code(call, request) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    return caught.value.code(), caught.value.details()


BAD_INFERENCE = [
    ("unknown model", lambda x: _request(x, model="nope"), grpc.StatusCode.NOT_FOUND, "not served"),
    ("hostile name", lambda x: _request(x, model="../x"), grpc.StatusCode.NOT_FOUND, "not served"),
    ("wrong input name", lambda x: _request(x, name="pixels"), grpc.StatusCode.INVALID_ARGUMENT, "no input"),
    ("wrong shape", lambda x: _request(x[:, :, :27]), grpc.StatusCode.INVALID_ARGUMENT, "shape"),
    ("wrong dtype", lambda x: _request(x.astype(np.float64), datatype="FP64"), grpc.StatusCode.INVALID_ARGUMENT, "datatype"),
    ("byte count", lambda x: _short(x), grpc.StatusCode.INVALID_ARGUMENT, "bytes"),
    ("duplicate input", lambda x: _duplicate(x), grpc.StatusCode.INVALID_ARGUMENT, "twice"),
    ("no inputs", lambda x: pb.ModelInferRequest(model_name="vit-fmnist"), grpc.StatusCode.INVALID_ARGUMENT, "no inputs"),
    ("batch too large", lambda x: _request(np.zeros((65, 1, 28, 28), np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "batch size"),
    ("bad version", lambda x: _versioned(x, "7"), grpc.StatusCode.NOT_FOUND, "version 7"),
    ("version text", lambda x: _versioned(x, "latest"), grpc.StatusCode.INVALID_ARGUMENT, "not an integer"),
    ("negative dim", lambda x: _negative(x), grpc.StatusCode.INVALID_ARGUMENT, "negative"),
]


def _short(x: np.ndarray) -> pb.ModelInferRequest:
    request = _request(x)
    request.raw_input_contents[0] = request.raw_input_contents[0][:-4]
    return request


def _duplicate(x: np.ndarray) -> pb.ModelInferRequest:
    request = _request(x)
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


def _versioned(x: np.ndarray, version: str) -> pb.ModelInferRequest:
    request = _request(x)
    request.model_version = version
    return request


def _negative(x: np.ndarray) -> pb.ModelInferRequest:
    request = _request(x)
    request.inputs[0].shape[0] = -1
    return request


@pytest.mark.parametrize("label,build,code,message", BAD_INFERENCE, ids=[b[0] for b in BAD_INFERENCE])
def test_bad_inference_requests(stub: pb_grpc.GRPCInferenceServiceStub, label: str, build, code, message: str) -> None:  # type: ignore[no-untyped-def]
    inputs, _ = fmnist_arrays()
    got_code, details = _code(stub.ModelInfer, build(inputs[:2]))
    assert got_code == code and message in details, (got_code, details)
    assert stub.ModelInfer(_request(inputs[:1])).model_name == "vit-fmnist"  # still serving


def test_oversize_message_is_resource_exhausted(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    request = _request(np.zeros((1, 1, 28, 28), np.float32))
    request.raw_input_contents[0] = b"\0" * (65 << 20)
    code, _details = _code(stub.ModelInfer, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_and_reflection(served: ServerProcess) -> None:
    channel = served.channel()
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService", "edgeq.v1.Quantization"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answer.list_services_response.service}
    assert {"inference.GRPCInferenceService", "edgeq.v1.Models", "grpc.health.v1.Health"} <= names


def test_repository_unload_and_load(own_server: ServerProcess) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(own_server.channel())
    index = stub.RepositoryIndex(pb.RepositoryIndexRequest())
    assert [(m.name, m.version, m.state) for m in index.models] == [("vit-fmnist", "1", "READY")]
    stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="vit-fmnist"))
    assert not stub.ModelReady(pb.ModelReadyRequest(name="vit-fmnist")).ready
    code, details = _code(stub.ModelInfer, _request(np.zeros((1, 1, 28, 28), np.float32)))
    assert code == grpc.StatusCode.NOT_FOUND and "RepositoryModelLoad" in details
    time.sleep(1.5)  # the store refresh must not reload a model the user unloaded
    assert not stub.ModelReady(pb.ModelReadyRequest(name="vit-fmnist")).ready
    stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="vit-fmnist"))
    assert stub.ModelReady(pb.ModelReadyRequest(name="vit-fmnist")).ready
    code, _ = _code(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="ghost"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_models_api_and_export(served: ServerProcess, tmp_path: Path) -> None:
    from edgeq_server.client import EdgeqClient

    models = edgeq_pb2_grpc.ModelsStub(served.channel())
    listing = models.List(edgeq_pb2.ListModelsRequest())
    assert [m.name for m in listing.models] == ["vit-fmnist"]
    version = listing.models[0].versions[0]
    assert version.loaded and version.metric == "top1" and version.budget_met
    report = models.GetReport(edgeq_pb2.ModelRef(name="vit-fmnist"))
    assert "<h2>Accuracy</h2>" in report.html and json.loads(report.json)["accuracy"]["metric"] == "top1"
    with EdgeqClient(served.target) as client:
        bundle = client.export("vit-fmnist", 1, tmp_path)
    from edgeq.store import ModelStore
    from edgeq.store.bundle import import_bundle

    imported = import_bundle(ModelStore(tmp_path / "edge"), bundle)
    assert (imported.path / "model.bin").stat().st_size > 100_000
    for name, code in (("ghost", grpc.StatusCode.NOT_FOUND), ("../etc", grpc.StatusCode.INVALID_ARGUMENT)):
        assert _code(models.Get, edgeq_pb2.ModelRef(name=name))[0] == code


def test_metrics_endpoint(served: ServerProcess, stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    import urllib.request

    inputs, _ = fmnist_arrays()
    stub.ModelInfer(_request(inputs[:1]))
    assert _code(stub.ModelInfer, _request(inputs[:1], model="ghost"))[0] == grpc.StatusCode.NOT_FOUND
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert 'edgeq_grpc_requests_total{code="OK",method="ModelInfer"}' in text
    assert 'edgeq_grpc_requests_total{code="NOT_FOUND",method="ModelInfer"}' in text
    assert "edgeq_grpc_request_seconds_bucket" in text and "edgeq_loaded_model_versions 1.0" in text


def test_hot_swap_under_load(own_server: ServerProcess, fmnist_result) -> None:  # type: ignore[no-untyped-def]
    """Publish version 2 while requests run: none fails and responses switch to version 2."""
    from edgeq.store import ModelStore

    stub = pb_grpc.GRPCInferenceServiceStub(own_server.channel())
    inputs, _ = fmnist_arrays()
    request = _request(inputs[:2])
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                versions.append(stub.ModelInfer(request, timeout=10).model_version)
            except grpc.RpcError as error:
                failures.append(f"{error.code()}: {error.details()}")

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    store = ModelStore(own_server.store)
    staged = store.staging_dir()
    for item in fmnist_result.path.iterdir():
        if item.name != "manifest.json":
            (staged / item.name).write_bytes(item.read_bytes())
    store.publish("vit-fmnist", staged)
    deadline = time.time() + 60  # loading version 2 competes with the 4 clients for 2 cores
    while time.time() < deadline and (not versions or versions[-1] != "2"):
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    for worker in workers:
        worker.join()
    assert failures == []
    assert versions[0] == "1" and versions[-1] == "2" and len(versions) > 20


def test_edgeq_bench_drives_the_server(served: ServerProcess, tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "edgeq.cli", "bench", "--target", served.target, "--model", "vit-fmnist",
                          "--concurrency", "1,2", "--duration", "1", "--json", str(tmp_path / "bench.json")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["requests"] > 10 and r["errors"] == 0 and r["p50_ms"] <= r["p99_ms"] for r in rows)
    refused = subprocess.run([sys.executable, "-m", "edgeq.cli", "bench", "--target", "10.1.2.3:8001", "--model", "m"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not a loopback address" in refused.stdout
