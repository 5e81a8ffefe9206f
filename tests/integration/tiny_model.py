"""A tiny OpenVINO model built in code and published into a store: serving tests need no quantization.

`tiny` takes x: FP32 [-1, 4] and answers doubled = 2x (FP32 [-1, 4]) and total = sum(x, axis 1)
(FP32 [-1, 1]), so every answer can be checked exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from edgeq.store import ModelStore

NAME = "tiny"


def tiny_model() -> ov.Model:
    x = ops.parameter([-1, 4], np.float32, name="x")
    doubled = ops.multiply(x, ops.constant(np.float32(2.0)))
    doubled.output(0).set_names({"doubled"})
    total = ops.reduce_sum(x, ops.constant(np.array([1], dtype=np.int64)), keep_dims=True)
    total.output(0).set_names({"total"})
    return ov.Model([doubled.output(0), total.output(0)], [x], NAME)


def tiny_store(root: Path, versions: int = 1) -> Path:
    store = ModelStore(root)
    for _ in range(versions):
        staged = store.staging_dir()
        ov.save_model(tiny_model(), staged / "model.xml", compress_to_fp16=False)
        store.publish(NAME, staged)
    return root


def expected(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"doubled": x * 2, "total": x.sum(axis=1, keepdims=True)}
