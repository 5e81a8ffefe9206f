"""Run by tests in its own process (tritonclient and our stubs both define `inference.*`).

    python triton_named_check.py GRPC_TARGET HTTP_URL MODEL INPUTS.npz OUT.npz

Sends every array of INPUTS.npz as the model input of that name, with the array's own dtype
(int64 token ids as INT64), over tritonclient.grpc and tritonclient.http unmodified; writes the
first output of each to OUT.npz (`grpc`, `http`) and prints the metadata and config as JSON.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import np_to_triton_dtype


def main() -> None:
    target, url, model, inputs_path, out_path = sys.argv[1:6]
    arrays = dict(np.load(inputs_path))
    grpc_client = triton_grpc.InferenceServerClient(target)
    http_client = triton_http.InferenceServerClient(url.removeprefix("http://"))
    metadata = grpc_client.get_model_metadata(model, as_json=True)
    config = grpc_client.get_model_config(model, as_json=True)["config"]
    output = metadata["outputs"][0]["name"]
    outputs = {}
    for name, module, client in (("grpc", triton_grpc, grpc_client), ("http", triton_http, http_client)):
        tensors = []
        for input_name, array in arrays.items():
            tensor = module.InferInput(input_name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        outputs[name] = client.infer(model, tensors).as_numpy(output)
    np.savez(out_path, **outputs)
    print(json.dumps({"metadata": metadata, "config": config,
                      "http_metadata": http_client.get_model_metadata(model)}))


if __name__ == "__main__":
    main()
