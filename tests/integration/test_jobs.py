"""Quantization through the service: upload, submit, watch, serve the result; crash and restart."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from edgeq_server.client import EdgeqClient
from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2 as infer_pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as infer_grpc
from tests.conftest import fmnist_arrays
from tests.integration.server_process import ServerProcess, copy_store

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from safetensors.torch import load_file

    from edgeq.models import fmnist_vit

    module = fmnist_vit.build().eval()
    module.load_state_dict(load_file(str(fmnist_vit.weights_path())))
    path = tmp_path_factory.mktemp("onnx") / "vit-fmnist.onnx"
    torch.onnx.export(module, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    return path


def _wait_state(client: EdgeqClient, job_id: str, states: set[str], timeout: float = 120,
                stage: str | None = None) -> pb.Job:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.quantization.Get(pb.JobRef(id=job_id))
        if pb.JobState.Name(job.state) in states and (stage is None or job.stage == stage):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {states}/{stage}: {job}")


def _spec(client: EdgeqClient, onnx: Path, calibration: Path, validation: Path | None, **options: object) -> pb.JobSpec:
    return pb.JobSpec(
        target_name=str(options.pop("name", "vit-onnx")),
        model=pb.ModelSource(onnx_artifact=client.upload(onnx).sha256),
        calibration_artifact=client.upload(calibration).sha256,
        validation_artifact=client.upload(validation).sha256 if validation else "",
        speed_seconds=0, **options)  # type: ignore[arg-type]


def test_upload_submit_watch_then_serve(onnx_model: Path, fmnist_npz: dict[str, Path], tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "store").start()
    try:
        with EdgeqClient(server.target) as client:
            job = client.submit(_spec(client, onnx_model, fmnist_npz["calibration"], fmnist_npz["validation"],
                                      metric="top1", max_drop=0.03))
            events: list[pb.JobEvent] = []
            final = client.watch(job.id, events.append)
            assert pb.JobState.Name(final.state) == "SUCCEEDED", final.error
            assert final.version == 1 and final.budget_met
            stages = [e.stage for e in events]
            assert "quantize" in stages and stages[-1] == "done"
            assert all(a <= b for a, b in zip([e.fraction for e in events], [e.fraction for e in events][1:]))
            summary = json.loads(final.result_json)
            assert summary["accuracy"]["metric"] == "top1"
        # served as soon as published: tritonclient, in its own process, on the new version
        ready = infer_grpc.GRPCInferenceServiceStub(server.channel())
        deadline = time.time() + 20
        while not ready.ModelReady(infer_pb.ModelReadyRequest(name="vit-onnx")).ready and time.time() < deadline:
            time.sleep(0.2)
        inputs, _ = fmnist_arrays()
        np.savez(tmp_path / "in.npz", inputs=inputs[:16])
        run = subprocess.run([sys.executable, str(HERE / "triton_check.py"), server.target, "vit-onnx",
                              str(tmp_path / "in.npz"), str(tmp_path / "out.npz")], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        served = np.load(tmp_path / "out.npz")["sync"]
        import openvino as ov

        from edgeq.compile import compile_cpu
        from edgeq.quantization import accuracy

        local = accuracy.run(compile_cpu(ov.Core().read_model(str(tmp_path / "store/vit-onnx/1/model.xml"))),
                             inputs[:16], 16)
        assert (served.argmax(1) == local.argmax(1)).all()
    finally:
        assert server.stop() == 0


def test_bad_jobs_are_refused_at_submit(onnx_model: Path, fmnist_npz: dict[str, Path], tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "store").start()
    try:
        with EdgeqClient(server.target) as client:
            calibration = client.upload(fmnist_npz["calibration"]).sha256
            cases = [
                (pb.JobSpec(target_name="../x", model=pb.ModelSource(timm="edgeq_vit_fmnist"),
                            calibration_artifact=calibration), grpc.StatusCode.INVALID_ARGUMENT, "model name"),
                (pb.JobSpec(target_name="x", model=pb.ModelSource(timm="edgeq_vit_fmnist"),
                            calibration_artifact="0" * 64), grpc.StatusCode.NOT_FOUND, "never uploaded"),
                (pb.JobSpec(target_name="x", model=pb.ModelSource(timm="edgeq_vit_fmnist")),
                 grpc.StatusCode.INVALID_ARGUMENT, "calibration"),
                (pb.JobSpec(target_name="x", calibration_artifact=calibration), grpc.StatusCode.INVALID_ARGUMENT,
                 "exactly one model source"),
                (pb.JobSpec(target_name="x", model=pb.ModelSource(timm="edgeq_vit_fmnist"), metric="f1",
                            calibration_artifact=calibration), grpc.StatusCode.INVALID_ARGUMENT, "metric"),
            ]
            for spec, code, message in cases:
                with pytest.raises(grpc.RpcError) as caught:
                    client.submit(spec)
                assert caught.value.code() == code and message in caught.value.details(), caught.value.details()
            # upload errors: declared hash mismatch, truncated upload, unknown type
            for chunks, code, message in [
                ([pb.UploadChunk(info=pb.UploadInfo(filename="a.npz", sha256="0" * 64), data=b"abc")],
                 grpc.StatusCode.INVALID_ARGUMENT, "does not match"),
                ([pb.UploadChunk(info=pb.UploadInfo(filename="a.npz", size=10), data=b"abc")],
                 grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
                ([pb.UploadChunk(info=pb.UploadInfo(filename="a.pkl"), data=b"abc")],
                 grpc.StatusCode.INVALID_ARGUMENT, "unsupported type"),
                ([pb.UploadChunk(data=b"abc")], grpc.StatusCode.INVALID_ARGUMENT, "filename"),
            ]:
                with pytest.raises(grpc.RpcError) as caught:
                    client.artifacts.Upload(iter(chunks))
                assert caught.value.code() == code and message in caught.value.details()
            with pytest.raises(grpc.RpcError) as caught:
                client.quantization.Get(pb.JobRef(id="nope"))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            # a corrupt ONNX passes submit (it is only parsed by the worker) and fails its job plainly
            (tmp_path / "broken.onnx").write_bytes(b"\x08garbage" * 64)
            job = client.submit(pb.JobSpec(target_name="broken", calibration_artifact=calibration,
                                           model=pb.ModelSource(onnx_artifact=client.upload(tmp_path / "broken.onnx").sha256)))
            final = client.watch(job.id)
            assert pb.JobState.Name(final.state) == "FAILED" and "not a valid ONNX model" in final.error
        assert not list((tmp_path / "store").glob("broken"))
    finally:
        server.stop()


def _p50_latency(stub: infer_grpc.GRPCInferenceServiceStub, request: infer_pb.ModelInferRequest, count: int) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        stub.ModelInfer(request)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_crash_mid_job_restart_cancel_and_queue_cap(onnx_model: Path, fmnist_npz: dict[str, Path], fmnist_result,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    store = copy_store(fmnist_result.path.parent.parent, tmp_path / "store")
    server = ServerProcess(store, "--max-queued-jobs", "2").start()
    inputs, _ = fmnist_arrays()
    request = infer_pb.ModelInferRequest(model_name="vit-fmnist")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(inputs[:1].tobytes())
    with EdgeqClient(server.target) as client:
        stub = infer_grpc.GRPCInferenceServiceStub(server.channel())
        idle = _p50_latency(stub, request, 50)
        # agreement with a zero budget (an explicit 0 is taken at its word) forces a long accuracy-control stage
        slow = _spec(client, onnx_model, fmnist_npz["calibration"], fmnist_npz["validation"], name="slow",
                     metric="agreement", max_drop=0.0, time_budget_seconds=300, max_iterations=50)
        first = client.submit(slow)
        second = client.submit(slow)
        with pytest.raises(grpc.RpcError) as caught:
            client.submit(slow)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 2" in caught.value.details()
        _wait_state(client, first.id, {"RUNNING"}, stage="quantize")
        busy = _p50_latency(stub, request, 50)
        assert busy < max(10 * idle, idle + 0.05), f"inference p50 {busy * 1e3:.1f} ms during a job vs {idle * 1e3:.1f} idle"
        _wait_state(client, first.id, {"RUNNING"}, stage="fallback", timeout=180)
    server.kill()

    restarted = ServerProcess(store).start()
    try:
        with EdgeqClient(restarted.target) as client:
            crashed = client.quantization.Get(pb.JobRef(id=first.id))
            assert pb.JobState.Name(crashed.state) == "FAILED" and "interrupted" in crashed.error
            # the queued job survives the restart and runs; cancel it within seconds
            _wait_state(client, second.id, {"RUNNING"}, timeout=60)
            started = time.time()
            client.quantization.Cancel(pb.JobRef(id=second.id))
            cancelled = _wait_state(client, second.id, {"CANCELLED"}, timeout=30)
            assert time.time() - started < 15 and cancelled.error
        assert restarted.process is not None
        from edgeq.store import ModelStore

        kept = ModelStore(store)
        assert [v.version for v in kept.versions("vit-fmnist")] == [1] and kept.validate() == []
        assert kept.names() == ["vit-fmnist"]
        stub = infer_grpc.GRPCInferenceServiceStub(restarted.channel())
        assert stub.ModelInfer(request).model_version == "1"
    finally:
        assert restarted.stop() == 0
