"""KServe v2 REST bodies <-> numpy, and the one edgeq error -> HTTP status table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeq import errors
from edgeq_server.rest import codec
from edgeq_server.rest.errors import STATUS, status_of


def _binary_body(arrays: dict[str, np.ndarray], extra: bytes = b"", **header: object) -> tuple[bytes, str]:
    inputs = [{"name": n, "shape": list(a.shape), "datatype": "INT64" if a.dtype == np.int64 else "FP32",
               "parameters": {"binary_data_size": a.nbytes}} for n, a in arrays.items()]
    text = json.dumps({"inputs": inputs, **header}).encode()
    return text + b"".join(a.tobytes() for a in arrays.values()) + extra, str(len(text))


def test_binary_inputs_are_zero_copy_views_in_input_order() -> None:
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([[7], [9]], dtype=np.int64)
    body, length = _binary_body({"a": a, "b": b}, id="r1", outputs=[{"name": "y", "parameters": {"binary_data": True}}])
    request = codec.decode_request(body, length)
    np.testing.assert_array_equal(request.inputs["a"], a)
    np.testing.assert_array_equal(request.inputs["b"], b)
    assert request.id == "r1" and request.outputs == ["y"] and request.binary == {"y"}
    assert not request.inputs["a"].flags.owndata  # a view of the body, not a copy


@pytest.mark.parametrize("body, length, message", [
    (*_binary_body({"a": np.zeros(2, np.float32)}, extra=b"xx"), "2 binary bytes after the last input"),
    (b'{"inputs": []}', "999", "does not fit a body of 14 bytes"),
    (b'{"inputs": []}', "ten", "must be an integer"),
    (b'[1, 2]', None, "must be a JSON object"),
    (b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32"}]}', None, "neither data nor"),
    (b'{"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}', None, "8 bytes of raw contents"),
    (b'{"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, "x"]}]}', None, "not a (nested) list"),
    (b'{"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}', None, "unsupported datatype"),
])
def test_bad_bodies_are_invalid_arguments(body: bytes, length: str | None, message: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        codec.decode_request(body, length)
    assert message in str(caught.value)


def test_outputs_answer_binary_when_asked_and_json_otherwise() -> None:
    request = codec.InferRequest("", {}, ["y", "z"], binary={"z"})
    y, z = np.array([[1.5, 2.5]], np.float32), np.array([[3]], np.int64)
    body, headers = codec.encode_response("m", "2", request, ["y", "z"], ["FP32", "INT64"], [y, z])
    size = int(headers[codec.HEADER_LENGTH])
    answer = json.loads(body[:size])
    assert answer["outputs"][0]["data"] == [1.5, 2.5] and answer["model_version"] == "2" and "id" not in answer
    assert answer["outputs"][1]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(np.frombuffer(body[size:], np.int64), [3])
    body, headers = codec.encode_response("m", "2", codec.InferRequest("r", {}, []), ["y"], ["FP32"], [y])
    assert headers == {"Content-Type": codec.JSON_TYPE} and json.loads(body)["id"] == "r"


def test_every_error_class_has_one_http_status() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.EdgeqError)
               and c is not errors.EdgeqError]
    assert sorted(c.__name__ for c in classes) == sorted(c.__name__ for c in STATUS)
    assert status_of(errors.NotFound("x")) == 404 and status_of(errors.InvalidArgument("x")) == 400
    assert status_of(errors.ResourceExhausted("x")) == 429 and status_of(ValueError("bug")) == 500
