"""KServe v2 REST inference bodies <-> numpy: JSON tensors and the binary tensor data extension.

With the extension, a body is a JSON header of `Inference-Header-Content-Length` bytes followed by
the raw tensors, in input order, of the inputs whose `parameters.binary_data_size` says how many
bytes they take; outputs asked for with `parameters.binary_data` (or every output, with the
request parameter `binary_data_output`) are answered the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeq.errors import InvalidArgument
from edgeq.runtime.tensors import DATATYPES, from_raw

HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


@dataclass
class InferRequest:
    id: str
    inputs: dict[str, np.ndarray]
    outputs: list[str]  # names asked for, in order; empty: every output
    binary: set[str] = field(default_factory=set)  # outputs to answer as raw bytes
    binary_all: bool = False


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def _parse_json(text: bytes | memoryview) -> dict[str, Any]:
    try:
        return _object(json.loads(bytes(text)), "the request body")
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"the request body is not valid JSON: {error}") from None


def _json_tensor(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    dtype = DATATYPES.get(datatype)
    if dtype is None:
        raise InvalidArgument(f"input {name!r}: unsupported datatype {datatype!r} (supported: {sorted(DATATYPES)})")
    try:
        values = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError) as error:
        raise InvalidArgument(f"input {name!r}: data is not a (nested) list of {datatype} values: {error}") from None
    return from_raw(name, datatype, shape, values.tobytes())  # checks the element count against the shape


def decode_request(body: bytes, header_length: str | None) -> InferRequest:
    """The inference request in `body` (a JSON header of `header_length` bytes, then binary tensors)."""
    view = memoryview(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise InvalidArgument(f"{HEADER_LENGTH} must be an integer, not {header_length!r}") from None
        if not 0 < size <= len(body):
            raise InvalidArgument(f"{HEADER_LENGTH} {size} does not fit a body of {len(body)} bytes")
        header, binary = _parse_json(view[:size]), view[size:]
    else:
        header, binary = _parse_json(view), view[len(view):]
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("the request has no inputs")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for item in inputs:
        tensor = _object(item, "each input")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(shape, list) \
                or not all(isinstance(d, int) for d in shape):
            raise InvalidArgument("each input needs a name, a datatype and a shape (a list of integers)")
        if name in arrays:
            raise InvalidArgument(f"input {name!r} appears twice")
        nbytes = _object(tensor.get("parameters") or {}, f"input {name!r} parameters").get("binary_data_size")
        if nbytes is not None:
            if not isinstance(nbytes, int) or nbytes < 0 or offset + nbytes > len(binary):
                raise InvalidArgument(f"input {name!r}: binary_data_size {nbytes!r} does not fit the "
                                      f"{len(binary) - offset} binary bytes left")
            arrays[name] = from_raw(name, datatype, shape, binary[offset:offset + nbytes])
            offset += nbytes
        elif "data" in tensor:
            arrays[name] = _json_tensor(name, datatype, shape, tensor["data"])
        else:
            raise InvalidArgument(f"input {name!r} has neither data nor parameters.binary_data_size")
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} binary bytes after the last input's binary_data_size")
    parameters = _object(header.get("parameters") or {}, "the request parameters")  # unknown ones are ignored
    wanted, binary_outputs = [], set()
    for item in header.get("outputs") or []:
        output = _object(item, "each requested output")
        if not isinstance(output.get("name"), str):
            raise InvalidArgument("each requested output needs a name")
        wanted.append(output["name"])
        if _object(output.get("parameters") or {}, "output parameters").get("binary_data"):
            binary_outputs.add(output["name"])
    request_id = header.get("id", "")
    return InferRequest(str(request_id), arrays, wanted, binary_outputs, bool(parameters.get("binary_data_output")))


def encode_response(model: str, version: str, request: InferRequest, names: list[str], datatypes: list[str],
                    arrays: list[np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers: JSON, or a JSON header and raw tensors when any output is binary."""
    outputs, chunks = [], []
    for name, datatype, array in zip(names, datatypes, arrays):
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.binary_all or name in request.binary:
            raw = np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.ravel().tolist()
        outputs.append(tensor)
    answer: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request.id:
        answer["id"] = request.id
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not chunks:
        return header, {"Content-Type": JSON_TYPE}
    return b"".join([header, *chunks]), {"Content-Type": BINARY_TYPE, HEADER_LENGTH: str(len(header))}
