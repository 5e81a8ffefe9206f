"""The end of a stop's grace period: requests OpenVINO is still computing are answered UNAVAILABLE
(with a reason) instead of being cancelled by gRPC's stop; queued ones were refused before."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from edgeq.compile import compile_cpu
from edgeq.errors import Unavailable
from edgeq.runtime.engine import BatchingPolicy, InferenceEngine
from edgeq.runtime.stats import VersionStats
from tests.integration.tiny_model import tiny_model


def test_cut_off_answers_running_batches_and_leaves_their_inputs_to_the_callback() -> None:
    async def scenario() -> None:
        engine = InferenceEngine(compile_cpu(tiny_model()), 2, BatchingPolicy(max_batch_size=1), VersionStats())
        rows = np.arange(4 * 4, dtype=np.float32).reshape(4, 4)
        running = [asyncio.ensure_future(engine.infer({"x": rows[i:i + 1]}, 1)) for i in range(engine.slots)]
        queued = asyncio.ensure_future(engine.infer({"x": rows[:1]}, 1))
        await asyncio.sleep(0)  # every caller has been handed to OpenVINO or queued; no callback ran on the loop yet
        assert engine.running == engine.slots and len(engine.started) == engine.slots
        assert engine.close(Unavailable("queued")) == 1
        assert engine.cut_off(Unavailable("still running")) == engine.slots
        for future in running:
            with pytest.raises(Unavailable, match="still running"):
                await future
        with pytest.raises(Unavailable, match="queued"):
            await queued
        assert await engine.wait_idle(10.0)  # the batches themselves ran to their callbacks
        assert not engine.started and engine.running == 0
        assert engine.cut_off(Unavailable("again")) == 0

    asyncio.run(scenario())


def test_cut_off_leaves_finished_callers_alone() -> None:
    async def scenario() -> None:
        engine = InferenceEngine(compile_cpu(tiny_model()), 2, BatchingPolicy(), VersionStats())
        doubled, total = await engine.infer({"x": np.ones((2, 4), np.float32)}, 2)
        assert doubled.tolist() == [[2.0] * 4] * 2 and total.tolist() == [[4.0], [4.0]]
        assert engine.cut_off(Unavailable("late")) == 0 and not engine.started

    asyncio.run(scenario())


def _slow_model() -> "object":
    """A chain of 120 512x512 matmuls: a 2048-row batch runs for seconds on two cores."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([-1, 512], np.float32, name="x")
    h = x
    for _ in range(120):
        h = ops.relu(ops.matmul(h, ops.constant((rng.random((512, 512)) * 0.01).astype(np.float32)), False, False))
    return ov.Model([h], [x], "slow")


def test_cancel_running_stops_openvino_without_waiting_for_the_batches() -> None:
    async def scenario() -> tuple[float, float]:
        engine = InferenceEngine(compile_cpu(_slow_model()), 1, BatchingPolicy(max_batch_size=1), VersionStats())
        rows = np.ones((2048, 512), np.float32)
        started = time.monotonic()
        await engine.infer({"x": rows[:8]}, 8)  # a short one first: how long the long ones would take
        long_seconds = (time.monotonic() - started) * 2048 / 8
        running = [asyncio.ensure_future(engine.infer({"x": rows}, 2048)) for _ in range(engine.slots)]
        await asyncio.sleep(0.05)
        assert engine.cut_off(Unavailable("still running")) == engine.slots
        began = time.monotonic()
        engine.cancel_running()
        assert await engine.wait_idle(30.0)
        waited = time.monotonic() - began
        for future in running:
            with pytest.raises(Unavailable, match="still running"):
                await future
        assert not engine.started and engine.running == 0
        with pytest.raises(Unavailable):  # a cancelled engine takes nothing new
            await engine.infer({"x": rows[:1]}, 1)
        return waited, long_seconds

    waited, long_seconds = asyncio.run(scenario())
    assert waited < 1.0 and waited < long_seconds / 4, (waited, long_seconds)
