"""Loaded model versions: load, infer, hot-swap to new versions, unload.

Each loaded version has its own `InferenceEngine` (queue, dynamic batching, OpenVINO's
AsyncInferQueue). A request holds a reference to the version it started on, so unloading or
swapping never drops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeq.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from edgeq.names import check_model_name
from edgeq.runtime.cpu import usable_cores
from edgeq.runtime.engine import BatchingPolicy, InferenceEngine
from edgeq.runtime.memory import ByteBudget, Reservation, default_inflight_bytes
from edgeq.runtime.stats import VersionStats
from edgeq.runtime.tensors import DATATYPES, datatype_of
from edgeq.store import ModelStore, VersionInfo

log = logging.getLogger("edgeq.runtime")


# A message being read is held twice at the end of its read (the transport's buffer and the bytes it
# becomes), and twice again while it is parsed (those bytes and the parsed message).
RECEIVE_COPIES = 2
PARSE_COPIES = 2

RUNTIME_PROPERTIES = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING",
                      "INFERENCE_PRECISION_HINT")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: variable; includes the batch dimension


@dataclass
class RuntimeConfig:
    max_batch_size: int = 64  # rows one request may carry
    keep_versions: int = 1  # latest N versions of each model stay loaded
    num_streams: str | None = None  # OpenVINO NUM_STREAMS; None: the performance hint decides
    inference_threads: int | None = None  # None: the cores the CPU quota allows (edgeq.runtime.cpu)
    performance_hint: str = "THROUGHPUT"  # LATENCY: one request uses every core (best at concurrency 1)
    batching: BatchingPolicy = field(default_factory=BatchingPolicy)
    cpu_pinning: bool | None = None  # OpenVINO ENABLE_CPU_PINNING; None: OpenVINO decides
    # Also compile a batch-1 copy of dynamic-batch models for one-row requests: OpenVINO's CPU plugin
    # runs a static shape faster than a dynamic one (docs/benchmarks.md). The copy costs the model's
    # memory twice; False serves the dynamic model alone.
    static_batch_one: bool = True
    max_inflight_bytes: int = 0  # inputs and outputs of admitted requests; 0: a quarter of the memory

    def compile_properties(self) -> dict[str, Any]:
        """OpenVINO properties besides the hint: threads from the CPU quota, never the host's cores."""
        import os

        properties: dict[str, Any] = {}
        threads = self.inference_threads or usable_cores()
        if self.inference_threads or threads < (os.cpu_count() or threads):
            properties["INFERENCE_NUM_THREADS"] = threads
        if self.num_streams:
            properties["NUM_STREAMS"] = self.num_streams
        if self.cpu_pinning is not None:
            properties["ENABLE_CPU_PINNING"] = self.cpu_pinning
        return properties


@dataclass
class LoadedVersion:
    name: str
    version: int
    compiled: Any  # openvino.CompiledModel
    engine: InferenceEngine
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    stats: VersionStats = field(default_factory=VersionStats)
    properties: dict[str, str] = field(default_factory=dict)  # what OpenVINO runs it with (ModelConfig parameters)

    def output_row_bytes(self) -> int:
        """Bytes of one row of every output (dynamic dimensions other than the batch counted as 1)."""
        return sum(int(np.prod([max(d, 1) for d in spec.shape[1:]])) * DATATYPES[spec.datatype].itemsize
                   for spec in self.outputs)

    def check_inputs(self, arrays: dict[str, np.ndarray], max_batch: int) -> int:
        """Validate names, dtypes and shapes; return the batch size."""
        expected = {spec.name: spec for spec in self.inputs}
        unknown = sorted(set(arrays) - set(expected))
        if unknown:
            raise InvalidArgument(f"model {self.name!r} has no input(s) {unknown}; its inputs are {sorted(expected)}")
        missing = sorted(set(expected) - set(arrays))
        if missing:
            raise InvalidArgument(f"model {self.name!r} needs input(s) {missing}")
        batch = -1
        for name, array in arrays.items():
            spec = expected[name]
            datatype = datatype_of(array.dtype)
            if datatype != spec.datatype:
                raise InvalidArgument(f"input {name!r}: datatype {datatype}, the model needs {spec.datatype}")
            if len(array.shape) != len(spec.shape) or any(
                    want not in (-1, got) for want, got in zip(spec.shape[1:], array.shape[1:])):
                raise InvalidArgument(f"input {name!r}: shape {list(array.shape)}, the model needs {list(spec.shape)} "
                                      "(-1: any size)")
            if not 1 <= array.shape[0] <= max_batch:
                raise InvalidArgument(f"input {name!r}: batch size {array.shape[0]} must be 1..{max_batch}")
            if batch not in (-1, array.shape[0]):
                raise InvalidArgument(f"inputs disagree on the batch size ({batch} vs {array.shape[0]})")
            batch = array.shape[0]
        return batch


def _held_message(name: str, version: int, reason: str) -> str:
    return (f"version {version} of model {name!r} is held back from serving: {reason}. Serve it anyway: "
            f"`edgeq models promote {name} --version {version} --store STORE` or the Models.Promote RPC")


def _text(value: Any) -> str:
    """An OpenVINO property as text: element types by their name (bf16), booleans as the flags spell
    them (true/false), the rest as str() gives it."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)


def _tensor_specs(ports: Any) -> list[TensorSpec]:
    specs = []
    for port in ports:
        partial = port.get_partial_shape()
        shape = tuple(-1 if d.is_dynamic else d.get_length() for d in partial)
        specs.append(TensorSpec(port.get_any_name(), datatype_of(port.get_element_type().to_dtype()), shape))
    return specs


class ModelRegistry:
    def __init__(self, store: ModelStore, config: RuntimeConfig | None = None):
        self.store = store
        self.config = config or RuntimeConfig()
        self.loaded: dict[str, dict[int, LoadedVersion]] = {}
        self.loading: set[tuple[str, int]] = set()
        self.unloaded_by_user: set[str] = set()
        self.inflight = 0  # requests between validation and response, over all models
        self.budget = ByteBudget(self.config.max_inflight_bytes or default_inflight_bytes())
        self.stopping: Unavailable | None = None  # set by `close`: requests not yet read are refused with it
        self._lock = asyncio.Lock()

    # ---------------------------------------------------------------- loading
    def _compile(self, info: VersionInfo) -> tuple[Any, Any | None]:
        """The model as stored and, where its batch is the only dynamic dimension, a static batch-1 copy."""
        from edgeq.compile import compile_cpu, core

        model = core().read_model(*map(str, info.served_files()))  # the IR this store chose (edgeq.runtime.choice)
        properties = self.config.compile_properties()
        shapes = [port.get_partial_shape() for port in model.inputs]
        copy = self.config.static_batch_one and all(
            s.rank.is_static and s[0].is_dynamic and all(d.is_static for d in list(s)[1:]) for s in shapes)
        if copy and self.config.cpu_pinning is None:
            # Each compiled model pins its streams' threads to the same cores, so a batch running on
            # one copy and a batch on the other would share a core while the other core idles.
            properties["ENABLE_CPU_PINNING"] = False
        compiled = compile_cpu(model, hint=self.config.performance_hint, extra=properties)
        if not copy:
            return compiled, None
        model.reshape({port: [1, *[d.get_length() for d in list(shape)[1:]]] for port, shape in zip(model.inputs, shapes)})
        return compiled, compile_cpu(model, hint=self.config.performance_hint, extra=properties)

    async def _load(self, info: VersionInfo) -> LoadedVersion:
        key = (info.name, info.version)
        self.loading.add(key)
        try:
            compiled, single = await asyncio.to_thread(self._compile, info)
        finally:
            self.loading.discard(key)
        outputs = _tensor_specs(compiled.outputs)
        stats = VersionStats()
        engine = InferenceEngine(compiled, len(outputs), self.config.batching, stats, single)
        properties = {key: _text(compiled.get_property(key)) for key in RUNTIME_PROPERTIES}
        properties["infer_requests"] = str(engine.slots)
        properties["static_batch_one"] = str(single is not None).lower()
        properties["ir"] = info.served_ir  # int8 or float, and why: shown in ModelConfig's parameters
        properties["ir_choice"] = info.serve_reason or "no choice recorded: INT8"
        loaded = LoadedVersion(info.name, info.version, compiled, engine, _tensor_specs(compiled.inputs), outputs,
                               stats, properties)
        log.info("loaded %s version %d (%s)", info.name, info.version,
                 ", ".join(f"{k}={v}" for k, v in properties.items()))
        return loaded

    async def refresh(self) -> None:
        """Load the latest N versions of every model in the store, then unload older ones."""
        async with self._lock:
            for name in self.store.names():
                if name in self.unloaded_by_user:
                    continue
                await self._sync_model(name)
            for name in list(self.loaded):
                if not self.store.versions(name):
                    self.loaded.pop(name, None)

    async def _sync_model(self, name: str) -> None:
        wanted = self.store.servable(name)[-self.config.keep_versions:]
        current = self.loaded.setdefault(name, {})
        for info in wanted:
            if info.version not in current:
                try:
                    current[info.version] = await self._load(info)
                except Exception as error:  # noqa: BLE001 - one bad version must not stop the others
                    log.error("cannot load %s version %d: %s", name, info.version, error)
        keep = {info.version for info in wanted}
        for version in [v for v in current if v not in keep]:
            current.pop(version)  # in-flight requests keep their reference; the queue drains by itself
        if not current:
            self.loaded.pop(name, None)

    async def load(self, name: str) -> None:
        check_model_name(name)
        if not self.store.versions(name):
            raise NotFound(f"model {name!r} is not in the store")
        self.unloaded_by_user.discard(name)
        async with self._lock:
            await self._sync_model(name)
        if name not in self.loaded:
            self._explain_all_held(name)
            raise FailedPrecondition(f"model {name!r} could not be loaded; see the server log")

    async def unload(self, name: str) -> None:
        check_model_name(name)
        async with self._lock:
            if name not in self.loaded:
                raise NotFound(f"model {name!r} is not loaded")
            self.unloaded_by_user.add(name)
            self.loaded.pop(name)

    def is_loading(self, name: str, version: int) -> bool:
        return (name, version) in self.loading

    # ---------------------------------------------------------------- lookup
    def get(self, name: str, version: str | int = "") -> LoadedVersion:
        versions = self.loaded.get(name)
        if not versions:
            if name and any(name == n for n in self._store_names()):
                self._explain_all_held(name)
                raise NotFound(f"model {name!r} is in the store but not loaded (RepositoryModelLoad loads it)")
            raise NotFound(f"model {name!r} is not served; available: {sorted(self.loaded)}")
        if version in ("", 0, "0", None):
            return versions[max(versions)]
        try:
            number = int(version)
        except ValueError:
            raise InvalidArgument(f"model version {version!r} is not an integer") from None
        if number not in versions:
            self._explain_held(name, number)
            raise NotFound(f"version {number} of model {name!r} is not loaded; loaded versions: {sorted(versions)}")
        return versions[number]

    def _explain_held(self, name: str, version: int) -> None:
        try:
            reason = self.store.get(name, version).held()
        except Exception:  # noqa: BLE001 - not in the store: the caller's NotFound says so
            return
        if reason is not None:
            raise FailedPrecondition(_held_message(name, version, reason))

    def _explain_all_held(self, name: str) -> None:
        """FAILED_PRECONDITION naming the hold when every version of `name` is held back by the speed gate."""
        try:
            versions = self.store.versions(name)
        except Exception:  # noqa: BLE001 - the caller's NotFound says what is known
            return
        if versions and all(info.held() is not None for info in versions):
            latest = versions[-1]
            raise FailedPrecondition(_held_message(name, latest.version, str(latest.held())) +
                                     (f" (all {len(versions)} versions are held)" if len(versions) > 1 else ""))

    def _store_names(self) -> list[str]:
        try:
            return self.store.names()
        except Exception:  # noqa: BLE001
            return []

    def close(self, error: BaseException | None = None) -> int:
        """Stop taking requests (a message not yet read is refused before it is read); with `error`,
        answer every queued request with it. Returns how many."""
        if self.stopping is None:
            self.stopping = Unavailable("the server is stopping and takes no new requests; retry")
            self.budget.wake()
        return sum(loaded.engine.close(error) for loaded in self.all_loaded())

    def cut_off(self, error: BaseException) -> int:
        """Answer every request OpenVINO is still computing with `error`. Returns how many."""
        return sum(loaded.engine.cut_off(error) for loaded in self.all_loaded())

    def cancel_running(self) -> None:
        """Have OpenVINO abandon every batch it is computing (after `cut_off` answered their callers)."""
        for loaded in self.all_loaded():
            loaded.engine.cancel_running()

    async def wait_idle(self, timeout: float) -> bool:
        """Until OpenVINO has finished every started batch, of every version ever loaded and still referenced."""
        results = [await loaded.engine.wait_idle(timeout) for loaded in self.all_loaded()]
        return all(results)

    def all_loaded(self) -> list[LoadedVersion]:
        return [lv for versions in self.loaded.values() for lv in versions.values()]

    # ---------------------------------------------------------------- inference
    async def receiving(self, max_message_bytes: int) -> Reservation:
        """Admission for a request whose message is still to be read: the most it may hold is reserved
        before a byte of it is read (RESOURCE_EXHAUSTED when the budget is full of requests of known
        size; UNAVAILABLE once the server is stopping). The caller releases it when answered."""
        return await self.budget.reserve(RECEIVE_COPIES * max_message_bytes, lambda: self.stopping)

    @staticmethod
    def received(reservation: Reservation, message_bytes: int) -> None:
        """The message is read: its reservation becomes what parsing it holds."""
        reservation.settle(PARSE_COPIES * message_bytes)

    async def infer(self, target: LoadedVersion, arrays: dict[str, np.ndarray],
                    reservation: Reservation | None = None) -> list[np.ndarray]:
        """Run one request; outputs in the model's output order. With `reservation` (the request's
        admission from `receiving`), the request's bytes are settled there instead of admitted anew."""
        started = time.perf_counter_ns()
        self.inflight += 1
        held = 0
        try:
            rows = target.check_inputs(arrays, self.config.max_batch_size)
            # What this request holds until it is answered: its inputs (twice when merged) and outputs.
            size = 2 * sum(a.nbytes for a in arrays.values()) + rows * target.output_row_bytes()
            if reservation is not None:
                reservation.settle(size)
            else:
                self.budget.admit(size)
                held = size
            ordered = {spec.name: np.ascontiguousarray(arrays[spec.name]) for spec in target.inputs}
            return await target.engine.infer(ordered, rows)
        except InvalidArgument:
            target.stats.record_failure(time.perf_counter_ns() - started)
            raise
        finally:
            self.budget.release(held)
            self.inflight -= 1
