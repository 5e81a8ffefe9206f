"""Run by tests in its own process (tritonclient and our stubs both define `inference.*`).

    python triton_http_check.py HOST:PORT MODEL INPUTS.npy OUT.npz

Exercises tritonclient.http unmodified (binary tensors both ways, JSON tensors, async infer,
statistics, the repository) and prints a JSON summary; outputs go to OUT.npz.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException


def main() -> None:
    url, model, inputs_path, out_path = sys.argv[1:5]
    inputs = np.load(inputs_path)
    client = triton.InferenceServerClient(url, concurrency=2)
    metadata = client.get_model_metadata(model)
    config = client.get_model_config(model)
    input_name = metadata["inputs"][0]["name"]
    first, second = (o["name"] for o in metadata["outputs"])

    def request(batch: np.ndarray, binary: bool) -> list:
        tensor = triton.InferInput(input_name, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch, binary_data=binary)
        return [tensor]

    binary = client.infer(model, request(inputs, True), request_id="bin-1",
                          outputs=[triton.InferRequestedOutput(second, binary_data=True),
                                   triton.InferRequestedOutput(first, binary_data=True)],
                          parameters={"unknown_knob": 7})
    as_json = client.infer(model, request(inputs, False), outputs=[triton.InferRequestedOutput(first, binary_data=False)])
    every = client.infer(model, request(inputs, True))  # no outputs named: all, binary
    pending = client.async_infer(model, request(inputs[:1], True), model_version="1")
    async_result = pending.get_result()
    try:
        client.infer("no-such-model", request(inputs, True))
        unknown_error = ""
    except InferenceServerException as error:
        unknown_error = f"{error.status()} {error.message()}"
    np.savez(out_path, binary_first=binary.as_numpy(first), binary_second=binary.as_numpy(second),
             json_first=as_json.as_numpy(first), every_second=every.as_numpy(second),
             async_first=async_result.as_numpy(first))
    print(json.dumps({
        "live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(model),
        "unknown_ready": client.is_model_ready("no-such-model"), "metadata": metadata, "config": config,
        "binary_id": binary.get_response()["id"], "binary_outputs": [o["name"] for o in binary.get_response()["outputs"]],
        "json_has_data": "data" in as_json.get_response()["outputs"][0], "unknown_error": unknown_error,
        "stats": client.get_inference_statistics(model), "server": client.get_server_metadata(),
        "index": client.get_model_repository_index(),
    }))
    client.close()


if __name__ == "__main__":
    main()
