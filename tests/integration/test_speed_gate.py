"""The speed gate: a version that is not faster than the float model is stored and reported, not served."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

import edgeq
from edgeq_server.gen.edgeq.v1 import edgeq_pb2, edgeq_pb2_grpc
from edgeq_server.gen.inference import grpc_service_pb2 as pb
from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc
from tests.integration.server_process import ServerProcess


def _infer_request(name: str, version: str) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=name, model_version=version)
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(np.zeros((1, 1, 28, 28), np.float32).tobytes())
    return request


def test_a_version_below_the_gate_is_held_until_promoted(fmnist_npz: dict[str, Path], tmp_path: Path) -> None:
    common = dict(calibration=str(fmnist_npz["calibration"]), validation=str(fmnist_npz["validation"]),
                  store=str(tmp_path / "store"), name="gated", metric="agreement", max_drop=0.5, no_fallback=True,
                  sensitivity_samples=1, speed_seconds=0.1, speed_rounds=1)
    fast_enough = edgeq.quantize("timm:edgeq_vit_fmnist", min_speedup=0.01, **common)
    too_slow = edgeq.quantize("timm:edgeq_vit_fmnist", min_speedup=1000.0, **common)  # nothing is 1000x faster
    assert fast_enough.served and fast_enough.report.speed_gate and fast_enough.report.speed_gate.met
    gate = too_slow.report.speed_gate
    assert not too_slow.served and gate and (gate.met, gate.forced, gate.served) == (False, False, False)
    assert any("stored but not served" in w for w in too_slow.report.warnings)
    assert "held back from serving" in (too_slow.path / "report.html").read_text()

    shutil.copytree(too_slow.path, tmp_path / "store" / "only-held" / "1")  # a model whose only version is held
    shutil.copy(too_slow.path.parent / "2.held", tmp_path / "store" / "only-held" / "1.held")
    server = ServerProcess(tmp_path / "store").start()
    try:
        channel = server.channel()
        inference = pb_grpc.GRPCInferenceServiceStub(channel)
        models = edgeq_pb2_grpc.ModelsStub(channel)
        assert inference.ModelReady(pb.ModelReadyRequest(name="gated", version="1")).ready
        assert not inference.ModelReady(pb.ModelReadyRequest(name="gated", version="2")).ready
        latest = inference.ModelInfer(_infer_request("gated", ""))
        assert latest.model_version == "1", "an unversioned request goes to the newest servable version"
        with pytest.raises(grpc.RpcError) as refused:
            inference.ModelInfer(_infer_request("gated", "2"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "held back" in refused.value.details() and "edgeq models promote gated --version 2" in refused.value.details()
        for call in (lambda: inference.ModelInfer(_infer_request("only-held", "")),
                     lambda: inference.ModelMetadata(pb.ModelMetadataRequest(name="only-held")),
                     lambda: inference.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="only-held"))):
            with pytest.raises(grpc.RpcError) as held:
                call()
            assert held.value.code() == grpc.StatusCode.FAILED_PRECONDITION, held.value.details()
            assert "held back" in held.value.details() and "below the speed gate" in held.value.details()
            assert "edgeq models promote only-held --version 1" in held.value.details()
        index = inference.RepositoryIndex(pb.RepositoryIndexRequest())
        assert {m.version: m.reason.startswith("held back") for m in index.models if m.name == "gated"} == \
            {"1": False, "2": True}
        listed = {v.version: v.held_reason for v in models.Get(edgeq_pb2.ModelRef(name="gated")).versions}
        assert listed[1] == "" and "below the speed gate x1000.0" in listed[2]

        with pytest.raises(grpc.RpcError) as no_version:
            models.Promote(edgeq_pb2.ModelRef(name="gated"))
        assert no_version.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        promoted = models.Promote(edgeq_pb2.ModelRef(name="gated", version=2))
        assert {v.version: v.held_reason for v in promoted.versions} == {1: "", 2: ""}
        assert inference.ModelReady(pb.ModelReadyRequest(name="gated", version="2")).ready
        assert inference.ModelInfer(_infer_request("gated", "")).model_version == "2"
    finally:
        assert server.stop() == 0
