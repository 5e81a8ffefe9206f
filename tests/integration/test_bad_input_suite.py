"""Malformed requests for every RPC that takes input: each gets its documented status code and a message
naming the problem; afterwards the server still answers correctly and its memory has not run away.
Then hypothesis fuzzes ModelInfer's fields."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeq_server.gen.edgeq.v1 import edgeq_pb2 as mpb
from edgeq_server.gen.edgeq.v1 import edgeq_pb2_grpc as mgrpc
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from tests.integration.server_process import ServerProcess, copy_store

C = grpc.StatusCode
GOOD = np.zeros((1, 1, 28, 28), np.float32)


@pytest.fixture(scope="module")
def server(fmnist_result, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    store = copy_store(fmnist_result.path.parent.parent, tmp_path_factory.mktemp("bad") / "store")
    process = ServerProcess(store, "--max-message-bytes", str(8 << 20)).start()
    yield process
    assert process.stop() == 0


def infer(model: str = "vit-fmnist", name: str = "x", datatype: str = "FP32", shape: list[int] | None = None,
          raw: bytes | None = None, version: str = "", extra: Callable[[pb.ModelInferRequest], None] | None = None,
          typed: list[float] | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape if shape is not None else [1, 1, 28, 28])
    if typed is not None:
        tensor.contents.fp32_contents.extend(typed)
    else:
        request.raw_input_contents.append(GOOD.tobytes() if raw is None else raw)
    if extra:
        extra(request)
    return request


def _two_inputs(request: pb.ModelInferRequest) -> None:
    request.inputs.add(name="y", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(GOOD.tobytes())


def _missing_raw(request: pb.ModelInferRequest) -> None:
    request.inputs.add(name="x2", datatype="FP32", shape=[1])


def _bad_output(request: pb.ModelInferRequest) -> None:
    request.outputs.add(name="no-such-output")


def chunks(*items: mpb.UploadChunk) -> list[mpb.UploadChunk]:
    return list(items)


INFO = mpb.UploadInfo
CASES: list[tuple[str, str, Any, C, str]] = [
    # (label, rpc, request, code, message fragment)
    ("unknown model", "ModelInfer", infer(model="ghost"), C.NOT_FOUND, "not served"),
    ("empty model name", "ModelInfer", infer(model=""), C.NOT_FOUND, "not served"),
    ("path model name", "ModelInfer", infer(model="../../etc/passwd"), C.NOT_FOUND, "not served"),
    ("unknown version", "ModelInfer", infer(version="9"), C.NOT_FOUND, "version 9"),
    ("negative version", "ModelInfer", infer(version="-3"), C.NOT_FOUND, "version -3"),
    ("text version", "ModelInfer", infer(version="v1"), C.INVALID_ARGUMENT, "not an integer"),
    ("wrong input name", "ModelInfer", infer(name="pixels"), C.INVALID_ARGUMENT, "no input"),
    ("fp64 dtype", "ModelInfer", infer(datatype="FP64", raw=GOOD.astype(np.float64).tobytes()), C.INVALID_ARGUMENT, "datatype"),
    ("int8 dtype", "ModelInfer", infer(datatype="INT8", raw=b"\0" * 784), C.INVALID_ARGUMENT, "datatype"),
    ("unknown dtype", "ModelInfer", infer(datatype="FP128"), C.INVALID_ARGUMENT, "unsupported datatype"),
    ("BYTES dtype", "ModelInfer", infer(datatype="BYTES"), C.INVALID_ARGUMENT, "unsupported datatype"),
    ("lower-case dtype", "ModelInfer", infer(datatype="fp32"), C.INVALID_ARGUMENT, "unsupported datatype"),
    ("short raw", "ModelInfer", infer(raw=GOOD.tobytes()[:-1]), C.INVALID_ARGUMENT, "bytes"),
    ("long raw", "ModelInfer", infer(raw=GOOD.tobytes() + b"\0"), C.INVALID_ARGUMENT, "bytes"),
    ("empty raw", "ModelInfer", infer(raw=b""), C.INVALID_ARGUMENT, "bytes"),
    ("rank 3", "ModelInfer", infer(shape=[1, 28, 28], raw=b"\0" * 3136), C.INVALID_ARGUMENT, "shape"),
    ("rank 5", "ModelInfer", infer(shape=[1, 1, 1, 28, 28]), C.INVALID_ARGUMENT, "shape"),
    ("wrong channels", "ModelInfer", infer(shape=[1, 3, 28, 28], raw=b"\0" * 9408), C.INVALID_ARGUMENT, "shape"),
    ("wrong width", "ModelInfer", infer(shape=[1, 1, 28, 14], raw=b"\0" * 1568), C.INVALID_ARGUMENT, "shape"),
    ("zero batch", "ModelInfer", infer(shape=[0, 1, 28, 28], raw=b""), C.INVALID_ARGUMENT, "batch size"),
    ("batch over max", "ModelInfer", infer(shape=[65, 1, 28, 28], raw=b"\0" * 65 * 3136), C.INVALID_ARGUMENT, "batch size"),
    ("negative dim", "ModelInfer", infer(shape=[-1, 1, 28, 28]), C.INVALID_ARGUMENT, "negative"),
    ("huge dims", "ModelInfer", infer(shape=[2**40, 2**40, 1, 1]), C.INVALID_ARGUMENT, "absurdly large"),
    ("no shape", "ModelInfer", infer(shape=[]), C.INVALID_ARGUMENT, "bytes"),
    ("duplicate input", "ModelInfer", infer(extra=lambda r: (r.inputs.add(name="x", datatype="FP32", shape=[1, 1, 28, 28]),
                                                              r.raw_input_contents.append(GOOD.tobytes()))),
     C.INVALID_ARGUMENT, "twice"),
    ("extra input", "ModelInfer", infer(extra=_two_inputs), C.INVALID_ARGUMENT, "no input"),
    ("raw count mismatch", "ModelInfer", infer(extra=_missing_raw), C.INVALID_ARGUMENT, "raw_input_contents"),
    ("no inputs", "ModelInfer", pb.ModelInferRequest(model_name="vit-fmnist"), C.INVALID_ARGUMENT, "no inputs"),
    ("typed too few", "ModelInfer", infer(typed=[0.0] * 10), C.INVALID_ARGUMENT, "10 values"),
    ("typed none", "ModelInfer", infer(typed=[]), C.INVALID_ARGUMENT, "0 values"),
    ("unknown output", "ModelInfer", infer(extra=_bad_output), C.INVALID_ARGUMENT, "no output"),
    ("NaN input is data, not an error", "ModelInfer", infer(raw=np.full((1, 1, 28, 28), np.nan, np.float32).tobytes()),
     C.OK, ""),
    ("oversize message", "ModelInfer", infer(raw=b"\0" * (9 << 20)), C.RESOURCE_EXHAUSTED, ""),
    ("metadata unknown", "ModelMetadata", pb.ModelMetadataRequest(name="ghost"), C.NOT_FOUND, "not served"),
    ("metadata bad version", "ModelMetadata", pb.ModelMetadataRequest(name="vit-fmnist", version="4"), C.NOT_FOUND, "version 4"),
    ("config unknown", "ModelConfig", pb.ModelConfigRequest(name="ghost"), C.NOT_FOUND, "not served"),
    ("config bad version", "ModelConfig", pb.ModelConfigRequest(name="vit-fmnist", version="x"), C.INVALID_ARGUMENT, "integer"),
    ("statistics unknown", "ModelStatistics", pb.ModelStatisticsRequest(name="ghost"), C.NOT_FOUND, "not served"),
    ("load unknown", "RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="ghost"), C.NOT_FOUND, "not in the store"),
    ("load hostile", "RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="../x"), C.INVALID_ARGUMENT, "model name"),
    ("unload unknown", "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="ghost"), C.NOT_FOUND, "not loaded"),
    ("unload hostile", "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="a/b"), C.INVALID_ARGUMENT, "model name"),
    ("models get unknown", "Models.Get", mpb.ModelRef(name="ghost"), C.NOT_FOUND, "not found"),
    ("models get hostile", "Models.Get", mpb.ModelRef(name="../../x"), C.INVALID_ARGUMENT, "model name"),
    ("report bad version", "Models.GetReport", mpb.ModelRef(name="vit-fmnist", version=99), C.NOT_FOUND, "no version 99"),
    ("report negative version", "Models.GetReport", mpb.ModelRef(name="vit-fmnist", version=-1), C.INVALID_ARGUMENT, "version"),
    ("delete without version", "Models.Delete", mpb.ModelRef(name="vit-fmnist"), C.INVALID_ARGUMENT, "give the version"),
    ("delete unknown", "Models.Delete", mpb.ModelRef(name="ghost", version=1), C.NOT_FOUND, "not found"),
    ("promote without version", "Models.Promote", mpb.ModelRef(name="vit-fmnist"), C.INVALID_ARGUMENT, "give the version"),
    ("promote unknown", "Models.Promote", mpb.ModelRef(name="ghost", version=1), C.NOT_FOUND, "not found"),
    ("export unknown", "Models.Export", mpb.ModelRef(name="ghost"), C.NOT_FOUND, "not found"),
    ("job unknown", "Quantization.Get", mpb.JobRef(id="nope"), C.NOT_FOUND, "does not exist"),
    ("cancel unknown", "Quantization.Cancel", mpb.JobRef(id="nope"), C.NOT_FOUND, "does not exist"),
    ("watch unknown", "Quantization.Watch", mpb.JobRef(id="nope"), C.NOT_FOUND, "does not exist"),
    ("submit no source", "Quantization.Submit", mpb.JobSpec(target_name="x", calibration_artifact="a" * 64),
     C.INVALID_ARGUMENT, "exactly one model source"),
    ("submit bad artifact id", "Quantization.Submit", mpb.JobSpec(target_name="x", model=mpb.ModelSource(timm="t"),
                                                                 calibration_artifact="../../x"), C.INVALID_ARGUMENT, "sha256"),
    ("submit hostile name", "Quantization.Submit", mpb.JobSpec(target_name="..", model=mpb.ModelSource(timm="t")),
     C.INVALID_ARGUMENT, "model name"),
    ("upload empty stream", "Artifacts.Upload", chunks(), C.INVALID_ARGUMENT, "empty"),
    ("upload no info", "Artifacts.Upload", chunks(mpb.UploadChunk(data=b"x")), C.INVALID_ARGUMENT, "filename"),
    ("upload pickle", "Artifacts.Upload", chunks(mpb.UploadChunk(info=INFO(filename="w.pt"), data=b"x")),
     C.INVALID_ARGUMENT, "unsupported type"),
    ("upload hash mismatch", "Artifacts.Upload", chunks(mpb.UploadChunk(info=INFO(filename="a.npz", sha256="f" * 64), data=b"x")),
     C.INVALID_ARGUMENT, "does not match"),
    ("upload bad hash text", "Artifacts.Upload", chunks(mpb.UploadChunk(info=INFO(filename="a.npz", sha256="xyz"), data=b"x")),
     C.INVALID_ARGUMENT, "64 lowercase hex"),
    ("upload truncated", "Artifacts.Upload", chunks(mpb.UploadChunk(info=INFO(filename="a.onnx", size=100), data=b"x" * 10)),
     C.INVALID_ARGUMENT, "truncated"),
    ("upload zero bytes", "Artifacts.Upload", chunks(mpb.UploadChunk(info=INFO(filename="a.onnx"))), C.INVALID_ARGUMENT, "empty"),
    ("upload declared too big", "Artifacts.Upload", chunks(mpb.UploadChunk(info=INFO(filename="a.onnx", size=2**40))),
     C.RESOURCE_EXHAUSTED, "limit"),
]


def _call(server: ServerProcess, rpc: str, request: Any) -> tuple[C, str]:
    channel = server.channel()
    service, _, method = rpc.rpartition(".")
    stub: Any = {"": pb_grpc.GRPCInferenceServiceStub, "Models": mgrpc.ModelsStub, "Quantization": mgrpc.QuantizationStub,
                 "Artifacts": mgrpc.ArtifactsStub}[service](channel)
    if method == "Upload":
        request = iter(request)  # a client stream
    try:
        answer = getattr(stub, method)(request, timeout=30)
        if method in ("Watch", "Export"):
            list(answer)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    finally:
        channel.close()
    return C.OK, ""


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# RPCs without a malformed-request case, and why.
NO_BAD_INPUT = {
    "ServerLive": "no fields", "ServerReady": "no fields", "ServerMetadata": "no fields", "Models.List": "no fields",
    "ModelReady": "an unknown model is an answer (ready = false), as the protocol says",
    "ModelStreamInfer": "its errors travel inside the stream (test_serving's tritonclient stream)",
    "RepositoryIndex": "its fields only filter the answer",
    "Quantization.List": "its limit only bounds the answer",
}


def test_every_rpc_has_a_bad_input_case_or_a_reason() -> None:
    """From the services' descriptors: a new RPC without a case here fails until it gets one."""
    rpcs = {m.name for m in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
    rpcs |= {f"{service.name}.{m.name}" for service in mpb.DESCRIPTOR.services_by_name.values() for m in service.methods}
    covered = {rpc for _label, rpc, *_rest in CASES}
    assert covered <= rpcs, f"cases name RPCs that do not exist: {covered - rpcs}"
    assert rpcs - covered == set(NO_BAD_INPUT), f"RPCs without a case: {rpcs - covered - set(NO_BAD_INPUT)}"


def test_every_bad_request_gets_its_code_and_the_server_survives(server: ServerProcess) -> None:
    assert server.process is not None
    for label, rpc, request, code, message in CASES[:5]:  # warm-up: first allocations are not a leak
        _call(server, rpc, request)
    rss_before = _rss_kb(server.process.pid)
    failures = []
    for _ in range(3):
        for label, rpc, request, code, message in CASES:
            got, details = _call(server, rpc, request)
            if got != code or message.lower() not in details.lower():
                failures.append(f"{label}: {got.name} {details!r}, expected {code.name} with {message!r}")
    assert failures == []
    growth_mb = (_rss_kb(server.process.pid) - rss_before) / 1024
    assert growth_mb < 64, f"RSS grew {growth_mb:.0f} MB over {3 * len(CASES)} bad requests"
    channel = server.channel()
    good = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer())
    assert good.model_name == "vit-fmnist" and len(good.raw_output_contents[0]) == 40
    channel.close()


DATATYPES = st.sampled_from(["FP32", "FP16", "INT64", "UINT8", "BOOL", "BYTES", "", "FP32 ", "\u0000"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=12), datatype=DATATYPES, shape=st.lists(st.integers(-2**40, 2**40), max_size=6),
       raw=st.binary(max_size=4096), version=st.text(max_size=6), model=st.sampled_from(["vit-fmnist", "", "x/../y"]))
def test_fuzzed_infer_requests_never_crash_the_server(server: ServerProcess, name: str, datatype: str, shape: list[int],
                                                      raw: bytes, version: str, model: str) -> None:
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    code, details = _call(server, "ModelInfer", request)
    assert code in (C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND), (code, details)
    assert server.process is not None and server.process.poll() is None
