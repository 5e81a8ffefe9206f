"""The KServe v2 REST/HTTP door: plain JSON over urllib, the binary tensor extension, unmodified
tritonclient.http and perf_analyzer -i http, errors as statuses with a JSON body, tokens, TLS, metrics."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.server_process import ServerProcess
from tests.integration.test_security import INFER, MANAGE, pki  # noqa: F401 - pki is a fixture
from tests.integration.tiny_model import NAME, expected, tiny_store

HERE = Path(__file__).resolve().parent
PERF = Path(sys.executable).parent.parent / "opt" / "perf_analyzer"
X = np.arange(12, dtype=np.float32).reshape(3, 4) - 4.5


def call(url: str, method: str = "GET", body: bytes | dict[str, Any] | None = None,
         headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def infer_body(x: np.ndarray = X, **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}], **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("http")
    process = ServerProcess(tiny_store(folder / "store"), "--metrics-port", "0").start()
    yield process
    assert process.stop() == 0


def test_json_inference_over_plain_http(server: ServerProcess) -> None:
    status, headers, body = call(f"{server.http_url}/v2/models/{NAME}/infer", "POST", infer_body(id="req-7"))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["model_name"] == NAME and answer["model_version"] == "1" and answer["id"] == "req-7"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert [o["name"] for o in answer["outputs"]] == ["doubled", "total"]  # the model's order when none is asked
    for name, want in expected(X).items():
        assert outputs[name]["datatype"] == "FP32" and outputs[name]["shape"] == list(want.shape)
        np.testing.assert_array_equal(np.array(outputs[name]["data"], np.float32).reshape(want.shape), want)
    # one output asked for, on the versioned route, with nested data given flat
    flat = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}],
            "outputs": [{"name": "total"}]}
    status, _, body = call(f"{server.http_url}/v2/models/{NAME}/versions/1/infer", "POST", flat)
    assert status == 200 and [o["name"] for o in json.loads(body)["outputs"]] == ["total"]
    assert json.loads(body)["outputs"][0]["data"] == expected(X)["total"].ravel().tolist()


def test_binary_tensor_data_both_ways(server: ServerProcess) -> None:
    header = json.dumps({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": X.nbytes}}],
                         "outputs": [{"name": "total", "parameters": {"binary_data": True}},
                                     {"name": "doubled", "parameters": {"binary_data": False}}]}).encode()
    status, headers, body = call(f"{server.http_url}/v2/models/{NAME}/infer", "POST", header + X.tobytes(),
                                 {"Inference-Header-Content-Length": str(len(header)),
                                  "Content-Type": "application/octet-stream"})
    assert status == 200, body
    size = int(headers["Inference-Header-Content-Length"])
    answer = json.loads(body[:size])
    total, doubled = answer["outputs"]
    assert total["name"] == "total" and total["parameters"]["binary_data_size"] == 12 and "data" not in total
    np.testing.assert_array_equal(np.frombuffer(body[size:], np.float32).reshape(3, 1), expected(X)["total"])
    np.testing.assert_array_equal(np.array(doubled["data"], np.float32).reshape(3, 4), expected(X)["doubled"])


def test_metadata_config_readiness_statistics_and_repository(server: ServerProcess) -> None:
    url = server.http_url
    assert call(f"{url}/v2/health/live")[0] == 200 and call(f"{url}/v2/health/ready")[0] == 200
    status, _, body = call(f"{url}/v2")
    assert status == 200 and json.loads(body)["name"] == "edgeq"
    assert "binary_tensor_data" in json.loads(body)["extensions"]
    metadata = json.loads(call(f"{url}/v2/models/{NAME}")[2])
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in metadata["outputs"]] == ["doubled", "total"] and metadata["versions"] == ["1"]
    config = json.loads(call(f"{url}/v2/models/{NAME}/versions/1/config")[2])
    assert config["max_batch_size"] == 64 and config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [4]}]
    assert call(f"{url}/v2/models/{NAME}/ready")[0] == 200 and call(f"{url}/v2/models/nope/ready")[0] == 400
    before = json.loads(call(f"{url}/v2/models/{NAME}/stats")[2])["model_stats"][0]["inference_count"]
    call(f"{url}/v2/models/{NAME}/infer", "POST", infer_body())
    stats = json.loads(call(f"{url}/v2/models/stats")[2])["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [(NAME, "1")] and stats[0]["inference_count"] == before + 3
    index = json.loads(call(f"{url}/v2/repository/index", "POST", b"{}")[2])
    assert index == [{"name": NAME, "version": "1", "state": "READY", "reason": ""}]
    assert call(f"{url}/v2/repository/models/{NAME}/unload", "POST", b"")[0] == 200
    assert call(f"{url}/v2/models/{NAME}/ready")[0] == 400
    assert json.loads(call(f"{url}/v2/repository/index", "POST", {"ready": True})[2]) == []
    assert call(f"{url}/v2/repository/models/{NAME}/load", "POST", b"")[0] == 200
    assert call(f"{url}/v2/models/{NAME}/ready")[0] == 200


@pytest.mark.parametrize("path, body, status, message", [
    ("/v2/models/nope/infer", infer_body(), 404, "model 'nope' is not served"),
    (f"/v2/models/{NAME}/infer", infer_body(X.reshape(4, 3)), 400, "shape [4, 3], the model needs [-1, 4]"),
    (f"/v2/models/{NAME}/infer", b"{not json", 400, "not valid JSON"),
    (f"/v2/models/{NAME}/infer", {"inputs": []}, 400, "no inputs"),
    (f"/v2/models/{NAME}/infer", infer_body(outputs=[{"name": "nope"}]), 400, "has no output(s) ['nope']"),
    (f"/v2/models/{NAME}/versions/7/infer", infer_body(), 404, "version 7 of model 'tiny' is not loaded"),
    ("/v2/models/nope", None, 404, "model 'nope' is not served"),
    ("/v2/nothing/here", None, 404, "Not Found"),
    ("/v2/repository/models/nope/load", b"", 404, "not in the store"),
])
def test_errors_are_statuses_with_a_json_body(server: ServerProcess, path: str, body: Any, status: int,
                                              message: str) -> None:
    got, headers, answer = call(server.http_url + path, "GET" if body is None else "POST", body)
    assert got == status and headers["Content-Type"].startswith("application/json")
    assert message in json.loads(answer)["error"]


def test_http_requests_are_counted(server: ServerProcess) -> None:
    call(f"{server.http_url}/v2/models/{NAME}/infer", "POST", infer_body())
    call(f"{server.http_url}/v2/models/nope/infer", "POST", infer_body())
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith("edgeq_http_requests_total")}
    assert counts['edgeq_http_requests_total{code="200",endpoint="ModelInfer"}'] >= 1
    assert counts['edgeq_http_requests_total{code="404",endpoint="ModelInfer"}'] >= 1


def test_tritonclient_http_unmodified(server: ServerProcess, tmp_path: Path) -> None:
    np.save(tmp_path / "inputs.npy", X)
    run = subprocess.run([sys.executable, str(HERE / "triton_http_check.py"), f"127.0.0.1:{server.http_port}", NAME,
                          str(tmp_path / "inputs.npy"), str(tmp_path / "out.npz")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["live"] and summary["ready"] and summary["model_ready"] and not summary["unknown_ready"]
    assert summary["metadata"]["name"] == NAME and summary["config"]["max_batch_size"] == 64
    assert summary["binary_id"] == "bin-1" and summary["binary_outputs"] == ["total", "doubled"]
    assert summary["json_has_data"] and summary["unknown_error"].startswith("404 model 'no-such-model' is not served")
    assert summary["stats"]["model_stats"][0]["inference_count"] >= 10
    assert summary["index"] == [{"name": NAME, "version": "1", "state": "READY", "reason": ""}]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["binary_first"], expected(X)["doubled"])
    np.testing.assert_array_equal(out["binary_second"], expected(X)["total"])
    np.testing.assert_array_equal(out["json_first"], expected(X)["doubled"])
    np.testing.assert_array_equal(out["every_second"], expected(X)["total"])
    np.testing.assert_array_equal(out["async_first"], expected(X[:1])["doubled"])


def test_perf_analyzer_over_http(server: ServerProcess) -> None:
    binary = PERF / "bin" / "perf_analyzer"
    assert binary.exists(), "perf_analyzer not unpacked (bash .ci/setup does it)"
    env = {**os.environ, "LD_LIBRARY_PATH": str(PERF / "lib")}
    # Interoperability, not a benchmark: "-s 100" accepts any stability on a busy machine.
    run = subprocess.run([str(binary), "-m", NAME, "-u", f"127.0.0.1:{server.http_port}", "-i", "http",
                          "--shape", "x:4", "--concurrency-range", "1:2", "-p", "1000", "--max-trials", "4",
                          "-s", "100"], capture_output=True, text=True, env=env, timeout=180)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Concurrency: 1, throughput:" in output and "Concurrency: 2, throughput:" in output
    assert "Successful request count" in output  # read from our statistics endpoint


def test_tokens_and_tls_guard_the_http_door(pki: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    tokens = tmp_path / "tokens"
    tokens.write_text(f"manage {MANAGE}\ninfer {INFER}\n")
    server = ServerProcess(tiny_store(tmp_path / "store"), "--token-file", str(tokens), "--require-infer-token",
                           "--tls-cert", str(pki["server.pem"]), "--tls-key", str(pki["server.key"])).start()
    context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    url = f"https://127.0.0.1:{server.http_port}"
    try:
        assert call(f"{url}/v2/health/ready", context=context)[0] == 200  # probes need no token
        status, _, body = call(f"{url}/v2/models/{NAME}/infer", "POST", infer_body(), context=context)
        assert status == 401 and "Authorization: Bearer" in json.loads(body)["error"]
        status, _, body = call(f"{url}/v2/models/{NAME}/infer", "POST", infer_body(),
                               {"Authorization": "Bearer not-a-token-of-this-server"}, context)
        assert status == 401 and "not one of this server's tokens" in json.loads(body)["error"]
        bearer = {"Authorization": f"Bearer {INFER}"}
        status, _, body = call(f"{url}/v2/models/{NAME}/infer", "POST", infer_body(), bearer, context)
        assert status == 200 and json.loads(body)["outputs"][1]["data"] == expected(X)["total"].ravel().tolist()
        status, _, body = call(f"{url}/v2/repository/models/{NAME}/unload", "POST", b"", bearer, context)
        assert status == 403 and "'manage' scope" in json.loads(body)["error"]
        assert call(f"{url}/v2/repository/models/{NAME}/unload", "POST", b"",
                    {"Authorization": f"Bearer {MANAGE}"}, context)[0] == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP gets no answer on the TLS port
            urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/v2/health/live", timeout=10)
    finally:
        assert server.stop() == 0
    assert MANAGE not in server.log.read_text() and INFER not in server.log.read_text()


def _scrape(server: ServerProcess) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_per_model_metrics_count_both_doors(server: ServerProcess) -> None:
    from edgeq_server.gen.inference import grpc_service_pb2 as pb
    from edgeq_server.gen.inference import grpc_service_pb2_grpc as pb_grpc

    label = f'{{model="{NAME}",version="1"}}'
    before = _scrape(server)
    assert call(f"{server.http_url}/v2/models/{NAME}/infer", "POST", infer_body())[0] == 200  # 3 rows over HTTP
    assert call(f"{server.http_url}/v2/models/{NAME}/infer", "POST", infer_body(X.reshape(4, 3)))[0] == 400
    request = pb.ModelInferRequest(model_name=NAME, inputs=[
        pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 4])],
        raw_input_contents=[X[:1].tobytes()])
    with server.channel() as channel:  # 1 row over gRPC
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    after = _scrape(server)

    def grew(name: str) -> float:
        return after[name + label] - before.get(name + label, 0.0)

    assert grew("edgeq_inference_request_success_total") == 2 and grew("edgeq_inference_request_failure_total") == 1
    assert grew("edgeq_inference_count_total") == 4 and grew("edgeq_inference_request_seconds_count") == 2
    assert grew("edgeq_inference_queue_seconds_count") == 2 and grew("edgeq_inference_request_duration_us_total") > 0
    executions = grew("edgeq_inference_exec_count_total")
    assert 1 <= executions <= 2 and grew("edgeq_inference_batch_size_count") == executions
    assert grew("edgeq_inference_batch_size_sum") == 4  # every row in exactly one execution
    # the runtime's statistics and the metrics are one source
    stats = json.loads(call(f"{server.http_url}/v2/models/{NAME}/stats")[2])["model_stats"][0]
    assert after["edgeq_inference_count_total" + label] == stats["inference_count"]
    assert after["edgeq_inference_exec_count_total" + label] == stats["execution_count"]
    assert after[f'edgeq_inference_request_seconds_bucket{{le="+Inf",model="{NAME}",version="1"}}'] == \
        stats["inference_stats"]["success"]["count"]
