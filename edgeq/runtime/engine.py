"""One loaded model version's inference: a queue of callers, merged into OpenVINO batches.

Callers queue; whenever one of OpenVINO's infer requests is idle, the queued rows are merged
into one batch (up to `max_batch_size` rows, only callers whose inputs agree on every dimension but
the batch) and started with `start_async`. So at low load a request starts at once, alone, and
under load the requests that arrived while the CPU was busy run together, which costs each fewer
per-call overheads. `delay_us` > 0 additionally holds a batch back until it reaches a preferred size
or the oldest caller has waited that long (Triton's `max_queue_delay_microseconds`).

A model whose batch dimension is dynamic can also be given a static batch-1 copy (`single`): one-row
batches run there, since OpenVINO's CPU plugin runs a static shape faster than a dynamic one. The two
compiled models share one count of slots, so together they never run more requests than OpenVINO's
streams take.

A slot (an idle infer request) is counted free only when OpenVINO's completion callback has run
for it, never when a caller gives up: a cancelled caller's rows may still be computing, and
`start_async` on a queue with no idle request would block the event loop. A caller cancelled while
still queued is dropped before it reaches OpenVINO.

The completion callback runs on an OpenVINO thread: it copies the outputs out of the request's
buffers (the request is reused at once) and hands the batch to the event loop with one
`call_soon_threadsafe`, where each caller gets a view of its own rows.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeq.errors import ResourceExhausted, Unavailable
from edgeq.runtime.stats import VersionStats


@dataclass(frozen=True)
class BatchingPolicy:
    """How callers are merged into OpenVINO calls (shown in ModelConfig's `dynamic_batching`)."""

    max_batch_size: int = 64  # rows in one OpenVINO call; 1 turns merging off
    delay_us: int = 0  # how long a batch smaller than the preferred sizes may wait for more rows
    preferred_sizes: tuple[int, ...] = ()
    max_queue: int = 256  # callers waiting per model version; beyond it RESOURCE_EXHAUSTED

    @property
    def merges(self) -> bool:
        return self.max_batch_size > 1


@dataclass(eq=False)
class _Caller:
    arrays: dict[str, np.ndarray]  # in the model's input order
    rows: int
    future: asyncio.Future[list[np.ndarray]]
    queued_ns: int = field(default_factory=time.perf_counter_ns)

    def shape_key(self) -> tuple[tuple[int, ...], ...]:
        return tuple(a.shape[1:] for a in self.arrays.values())


@dataclass(eq=False)
class _Batch:
    callers: list[_Caller]
    inputs: list[np.ndarray] = field(default_factory=list)  # what OpenVINO reads: kept alive until the callback
    started_ns: int = field(default_factory=time.perf_counter_ns)


class InferenceEngine:
    """Owns one compiled model's AsyncInferQueue; `infer` is called on the event loop only."""

    def __init__(self, compiled: Any, output_count: int, policy: BatchingPolicy, stats: VersionStats,
                 single: Any | None = None):
        import openvino as ov

        self.queue = ov.AsyncInferQueue(compiled)
        self.slots = len(self.queue)
        self.single_queue = ov.AsyncInferQueue(single, self.slots) if single is not None else None
        for queue in (self.queue, self.single_queue):
            if queue is not None:
                queue.set_callback(self._completed)
        self.idle = self.slots
        self.output_count = output_count
        self.policy = policy
        self.stats = stats
        self.waiting: deque[_Caller] = deque()
        self.started: set[_Batch] = set()  # handed to OpenVINO, callback not yet run
        self.closed = False
        self.cancelled = False  # `cancel_running` was called: OpenVINO calls back for no batch still running
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def running(self) -> int:
        """Infer requests OpenVINO is computing (including ones whose callers gave up)."""
        return self.slots - self.idle

    async def infer(self, arrays: dict[str, np.ndarray], rows: int) -> list[np.ndarray]:
        """Queue one caller's inputs (validated, model input order) and wait for its outputs."""
        if self.closed:
            raise Unavailable("this model version takes no new requests (the server is stopping); retry")
        if len(self.waiting) >= self.policy.max_queue:
            raise ResourceExhausted(f"{len(self.waiting)} requests are already queued for this model "
                                    f"(the limit is {self.policy.max_queue}); retry later")
        self._loop = self._loop or asyncio.get_running_loop()
        caller = _Caller(arrays, rows, self._loop.create_future())
        self.waiting.append(caller)
        self._pump()
        return await caller.future

    def close(self, error: BaseException | None = None) -> int:
        """Refuse new callers; with `error`, answer the queued ones with it too. Returns how many.

        Running batches are left to finish: their rows are in OpenVINO's hands (`wait_idle`)."""
        self.closed = True
        if error is None:
            return 0
        refused = 0
        while self.waiting:
            caller = self.waiting.popleft()
            if not caller.future.done():
                caller.future.set_exception(error)
                refused += 1
        return refused

    def cut_off(self, error: BaseException) -> int:
        """Answer the callers of batches OpenVINO is still computing with `error` (the end of a stop's
        grace period: the server cannot wait longer, and a caller told why beats a cancelled call).
        The batches themselves run to their callback, which keeps their inputs alive. Returns how many."""
        answered = 0
        for batch in self.started:
            for caller in batch.callers:
                if not caller.future.done():
                    caller.future.set_exception(error)
                    answered += 1
        return answered

    def cancel_running(self) -> None:
        """Have OpenVINO abandon the batches it is computing (the end of a stop, after `cut_off` has
        answered their callers: finishing them would outlast the grace period). A cancelled infer
        request gets no callback, and this engine starts no batch afterwards."""
        self.cancelled = True
        self.closed = True
        for queue in self._queues():
            for index in range(len(queue)):
                queue[index].cancel()

    def _queues(self) -> list[Any]:
        return [q for q in (self.queue, self.single_queue) if q is not None]

    def _wait_requests(self) -> None:
        for queue in self._queues():
            for index in range(len(queue)):
                try:
                    queue[index].wait()
                except RuntimeError:  # "Infer Request was canceled": it has stopped, which is what we wait for
                    pass

    async def wait_idle(self, timeout: float) -> bool:
        """Until every started batch's callback has run (so no OpenVINO thread calls back into a
        finished interpreter), or after `cancel_running` until OpenVINO has stopped every request;
        False if `timeout` seconds pass first."""
        if self.cancelled:
            try:
                await asyncio.wait_for(asyncio.to_thread(self._wait_requests), timeout)
            except asyncio.TimeoutError:
                return False
            self.started.clear()  # no callback will come for them; OpenVINO no longer reads their inputs
            self.idle = self.slots
            return True
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return not self.running

    # ------------------------------------------------------------------ on the event loop
    def _pump(self) -> None:
        while self.idle and self.waiting and not self.cancelled:
            batch = self._take_batch()
            if batch is None:
                return
            self.idle -= 1
            self._start(batch)

    def _take_batch(self) -> _Batch | None:
        while self.waiting and self.waiting[0].future.done():  # cancelled while queued: never computed
            self.waiting.popleft()
        if not self.waiting:
            return None
        first = self.waiting[0]
        limit = self.policy.max_batch_size
        key = first.shape_key()
        chosen: list[_Caller] = []
        rows = 0
        for caller in self.waiting:
            if caller.future.done() or caller.shape_key() != key:
                continue
            if rows + caller.rows > limit and chosen:
                break
            chosen.append(caller)
            rows += caller.rows
            if not self.policy.merges:
                break
        if self._should_wait(rows, first):
            return None
        for caller in chosen:
            self.waiting.remove(caller)
        return _Batch(chosen)

    def _should_wait(self, rows: int, oldest: _Caller) -> bool:
        policy = self.policy
        if policy.delay_us <= 0 or not policy.merges or rows >= policy.max_batch_size:
            return False
        if policy.preferred_sizes and rows in policy.preferred_sizes:
            return False
        remaining = policy.delay_us * 1000 - (time.perf_counter_ns() - oldest.queued_ns)
        if remaining <= 0:
            return False
        if self._timer is None:
            assert self._loop is not None
            self._timer = self._loop.call_later(remaining / 1e9, self._timer_fired)
        return True

    def _timer_fired(self) -> None:
        self._timer = None
        self._pump()

    def _start(self, batch: _Batch) -> None:
        callers = batch.callers
        if len(callers) == 1:
            batch.inputs = list(callers[0].arrays.values())
        else:
            names = list(callers[0].arrays)
            batch.inputs = [np.concatenate([c.arrays[name] for c in callers]) for name in names]
        queue = self.single_queue if self.single_queue is not None and len(batch.inputs[0]) == 1 else self.queue
        batch.started_ns = time.perf_counter_ns()
        self.started.add(batch)
        try:
            # `batch` keeps the arrays alive until the callback, so OpenVINO may read them in place.
            queue.start_async(batch.inputs, batch, share_inputs=True)
        except Exception as error:  # noqa: BLE001 - every caller of the batch learns why
            self.idle += 1
            self.started.discard(batch)
            self._finish(batch, None, error)

    def _finish(self, batch: _Batch, outputs: Sequence[np.ndarray] | None, error: BaseException | None) -> None:
        finished = time.perf_counter_ns()
        offset = 0
        if outputs is not None:
            self.stats.record_execution(sum(c.rows for c in batch.callers), finished - batch.started_ns)
        for caller in batch.callers:
            rows = slice(offset, offset + caller.rows)
            offset += caller.rows
            if caller.future.done():
                continue
            if error is not None or outputs is None:
                caller.future.set_exception(error or RuntimeError("no outputs"))
                self.stats.record_failure(finished - caller.queued_ns)
                continue
            caller.future.set_result([out[rows] if len(batch.callers) > 1 else out for out in outputs])
            self.stats.record_success(caller.rows, batch.started_ns - caller.queued_ns,
                                      finished - batch.started_ns, finished - caller.queued_ns)

    def _completed_on_loop(self, batch: _Batch, outputs: list[np.ndarray] | None, error: BaseException | None) -> None:
        self.idle += 1
        self.started.discard(batch)
        self._finish(batch, outputs, error)
        self._pump()

    # ------------------------------------------------------------------ on an OpenVINO thread
    def _completed(self, request: Any, batch: _Batch) -> None:
        outputs: list[np.ndarray] | None = None
        error: BaseException | None = None
        try:
            outputs = [request.get_output_tensor(i).data.copy() for i in range(self.output_count)]
        except Exception as caught:  # noqa: BLE001 - handed to the callers on the loop
            error = caught
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._completed_on_loop, batch, outputs, error)
        except RuntimeError:  # the loop is closed: the server stopped without waiting (wait_idle); nobody awaits
            pass
