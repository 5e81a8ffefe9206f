"""Run by tests in its own process (tritonclient and our stubs both define `inference.*`).

    python triton_check.py HOST:PORT MODEL INPUTS.npz OUT.npz

Exercises tritonclient.grpc unmodified and prints a JSON summary; outputs go to OUT.npz.
"""

from __future__ import annotations

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as triton


def main() -> None:
    target, model, inputs_path, out_path = sys.argv[1:5]
    inputs = np.load(inputs_path)["inputs"]
    client = triton.InferenceServerClient(target)
    metadata = client.get_model_metadata(model, as_json=True)
    config = client.get_model_config(model, as_json=True)["config"]
    input_name, output_name = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]

    def request(batch: np.ndarray) -> list:
        tensor = triton.InferInput(input_name, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        return [tensor]

    sync = client.infer(model, request(inputs), request_id="req-1",
                        outputs=[triton.InferRequestedOutput(output_name)], parameters={"unknown_knob": 7})
    results: queue.Queue = queue.Queue()
    client.async_infer(model, request(inputs[:1]), callback=lambda result, error: results.put((result, error)))
    async_result, async_error = results.get(timeout=30)
    assert async_error is None, async_error

    streamed: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: streamed.put((result, error)))
    for i in range(3):
        client.async_stream_infer(model, request(inputs[i:i + 1]), request_id=f"s{i}")
    client.async_stream_infer("no-such-model", request(inputs[:1]), request_id="bad")
    stream_outputs, stream_errors = {}, []
    for _ in range(4):
        result, error = streamed.get(timeout=30)
        if error is not None:
            stream_errors.append(str(error))
        else:
            stream_outputs[result.get_response().id] = result.as_numpy(output_name)
    client.stop_stream()
    stats = client.get_inference_statistics(model, as_json=True)
    np.savez(out_path, sync=sync.as_numpy(output_name), async_=async_result.as_numpy(output_name),
             stream=np.concatenate([stream_outputs[f"s{i}"] for i in range(3)]))
    print(json.dumps({
        "live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(model),
        "unknown_ready": client.is_model_ready("no-such-model"), "metadata": metadata, "config": config,
        "sync_id": sync.get_response().id, "sync_version": sync.get_response().model_version,
        "stream_errors": stream_errors, "stats": stats,
        "server": client.get_server_metadata(as_json=True),
    }))


if __name__ == "__main__":
    main()
