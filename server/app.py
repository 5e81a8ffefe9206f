"""Build and run the server: one `grpc.aio` server (inference, management, health, reflection), the
KServe v2 REST/HTTP door beside it in the same event loop over the same registry, and metrics.

    python -m edgeq_server.app --store DIR --port 8001       (or: edgeq serve ...)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgeq._offline import disable_telemetry
from edgeq.artifacts import ArtifactStore, sweep_partial_uploads
from edgeq.errors import InvalidArgument, NotFound, Unavailable
from edgeq.jobs.db import FINAL_STATES, JobDB
from edgeq.jobs.runner import JobRunner
from edgeq.runtime import memory
from edgeq.runtime.registry import ModelRegistry
from edgeq.store import ModelStore
from edgeq_server.auth import TokenAuth, TokenTable
from edgeq_server.config import ServerConfig, add_arguments, options_from_args
from edgeq_server.gen.edgeq.v1 import edgeq_pb2, edgeq_pb2_grpc
from edgeq_server.gen.inference import grpc_service_pb2
from edgeq_server.inference import InferenceServicer
from edgeq_server.inference import add_to_server as add_inference_to_server
from edgeq_server.interceptors import ErrorsAndMetrics
from edgeq_server.launch import HTTP, LISTENING, METRICS
from edgeq_server.management import ArtifactsServicer, ModelsServicer, QuantizationServicer
from edgeq_server.metrics import ServerMetrics
from edgeq_server.rest.routes import Access, HttpSite, build_app, ssl_context
from edgeq_server.startup_checks import warn_insecure_settings

log = logging.getLogger("edgeq.server")
QUANTIZE_MODULES = ("nncf", "torch", "timm")


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert or not config.tls_key:
        return None
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
                                       root_certificates=client_ca, require_client_auth=client_ca is not None)


def quantize_missing() -> str | None:
    """None when this install can quantize; else a message saying what to install."""
    absent = [m for m in QUANTIZE_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        return (f"this edgeq install serves models only ({', '.join(absent)} missing): "
                "install the quantization extra with `pip install 'edgeq[quantize]'`")
    return None


class EdgeqServer:
    def __init__(self, config: ServerConfig):
        disable_telemetry()
        memory.return_freed_memory_promptly()
        warn_insecure_settings(config)
        self.config = config
        if not config.store.is_dir() and not config.create:
            raise NotFound(f"no model store at {config.store}: give an existing folder, or --create for a new one")
        self.store = ModelStore(config.store)
        assert config.state_dir is not None
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts = ArtifactStore(config.state_dir, config.max_upload_bytes)
        sweep_partial_uploads(self.artifacts)
        self.jobs = JobDB(config.state_dir / ".jobs.sqlite", config.max_queued_jobs)
        self.registry = ModelRegistry(self.store, config.runtime_config())
        self.metrics = ServerMetrics()
        self.metrics.watch(lambda: len(self.registry.all_loaded()), lambda: self.registry.inflight, self.jobs.count,
                           ("QUEUED", "RUNNING", *FINAL_STATES))
        self.metrics.watch_models(self.registry.all_loaded)
        self.health = health.aio.HealthServicer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refresh_now = asyncio.Event()
        self.runner = JobRunner(config.store, config.state_dir, self.jobs, on_published=self._published,
                                memory_limit=config.worker_memory_bytes)
        self.ready = False
        # No BDP probing: it widens each call's HTTP/2 receive window to megabytes, and gRPC buffers
        # that much of every call it has not handed over yet, outside the byte budget (a burst of
        # 200 large requests held gigabytes that way). The fixed 64 KiB windows bound it.
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes), ("grpc.http2.bdp_probe", 0)]
        interceptors: list[grpc.aio.ServerInterceptor] = []
        tokens = TokenTable.load(config.token_file) if config.token_file else None
        if tokens:
            interceptors.append(TokenAuth(tokens, config.require_infer_token))
        interceptors.append(ErrorsAndMetrics(self.metrics))
        # No `maximum_concurrent_rpcs`: ModelInfer is admitted by the byte budget before its message
        # is read (edgeq_server.inference), which bounds what concurrency was meant to bound, and
        # gRPC's own counter has kept slots of finished calls (refusing requests on an idle server).
        self.server = grpc.aio.server(interceptors=interceptors, options=options)
        add_inference_to_server(InferenceServicer(self.registry, lambda: self.ready, config.max_message_bytes),
                                self.server)
        edgeq_pb2_grpc.add_ArtifactsServicer_to_server(ArtifactsServicer(self.artifacts), self.server)
        edgeq_pb2_grpc.add_QuantizationServicer_to_server(
            QuantizationServicer(self.jobs, self.artifacts, self.runner.wake, quantize_missing), self.server)
        edgeq_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(self.store, self.registry), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = [
            grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
            *[edgeq_pb2.DESCRIPTOR.services_by_name[s].full_name for s in ("Artifacts", "Quantization", "Models")],
        ]
        reflection.enable_server_reflection([*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME],
                                            self.server)
        http_app = build_app(self.registry, lambda: self.ready, self.metrics, Access(tokens, config.require_infer_token),
                             config.max_message_bytes)
        http_tls = ssl_context(config.tls_cert, config.tls_key, config.tls_client_ca) if config.tls_cert else None
        self.http = HttpSite(http_app, config.host, config.http_port, http_tls, config.grace_seconds)
        self.port = 0
        self.http_port = 0
        self.metrics_port = 0

    def _published(self) -> None:
        """Called from the job runner thread when a job publishes: refresh at once."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._refresh_now.set)

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        address = f"{self.config.host}:{self.config.port}"
        credentials = server_credentials(self.config)
        self.port = (self.server.add_secure_port(address, credentials) if credentials
                     else self.server.add_insecure_port(address))
        if self.port == 0:
            raise InvalidArgument(f"cannot listen on {self.config.host}:{self.config.port}")
        await self.registry.refresh()
        await self.server.start()
        self.http_port = await self.http.start()
        print(HTTP.format(host=self.config.host, port=self.http_port), flush=True)
        if self.config.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.config.metrics_port, self.config.host)
            print(METRICS.format(host=self.config.host, port=self.metrics_port), flush=True)
        self.runner.start()
        self.ready = True
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._refresher = asyncio.create_task(self._refresh_loop())
        log.info("edgeq serving %s on %s: gRPC %d, HTTP %d", self.config.store, self.config.host, self.port,
                 self.http_port)
        return self.port

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._refresh_now.wait(), self.config.refresh_seconds)
            except asyncio.TimeoutError:
                pass
            self._refresh_now.clear()
            if self.registry.inflight == 0:
                memory.trim()  # idle: whatever a burst left on the heap goes back to the system
            try:
                await self.registry.refresh()
            except Exception:  # noqa: BLE001 - keep serving what is loaded
                log.exception("model refresh failed")

    async def stop(self) -> None:
        """Graceful: stop accepting, let in-flight requests finish within the grace period.

        A running job is interrupted at the signal, beside the drain, not after it: otherwise whether
        it ends FAILED or publishes depends on how long the grace period happens to last."""
        self.ready = False
        await self.health.enter_graceful_shutdown()
        if hasattr(self, "_refresher"):
            self._refresher.cancel()
        inflight, answered_before = self.registry.inflight, self._answered()
        jobs_stopped = asyncio.ensure_future(asyncio.to_thread(self.runner.stop))
        grace = self.config.grace_seconds
        margin = min(1.0, grace / 4)
        # Drain while still listening: queued and running requests finish, new ones are answered
        # UNAVAILABLE at once (gRPC's own stop would cancel calls it has read but not dispatched).
        self.registry.close()
        await self._until_no_inference(grace - 2 * margin)
        # Requests still queued now would be cut off: answer them UNAVAILABLE with a reason instead.
        refused = self.registry.close(Unavailable(
            "the server is stopping and this request could not run within its grace period; retry"))
        await self._until_no_inference(margin)
        # Requests still in OpenVINO at the end of the grace period are answered too, not cancelled.
        cut = self.registry.cut_off(Unavailable(
            "the server is stopping and this request was still running when its grace period ended; retry"))
        self.registry.cancel_running()  # their batches would hold the exit back by seconds; nobody awaits them now
        # gRPC's stop cancels the calls it is still reading: `margin` lets them arrive and be refused
        # UNAVAILABLE (every model takes no new requests now) instead.
        await asyncio.gather(self.server.stop(margin), self.http.stop())
        idle = await self.registry.wait_idle(10.0)  # no OpenVINO thread may outlive the event loop
        answered = self._answered() - answered_before
        log.info("stopped: %d inference requests in flight at the signal: %d answered, %d refused UNAVAILABLE, "
                 "%d cut off by the %.0f s grace period (answered UNAVAILABLE), %d unaccounted for%s", inflight,
                 answered, refused, cut, grace, max(0, inflight - answered - refused - cut),
                 "" if idle else "; OpenVINO was still running")
        await jobs_stopped

    async def _until_no_inference(self, seconds: float, quiet: float = 0.1) -> None:
        """Until no request has been in flight for `quiet` seconds (a client answered OK may send
        its next one at once), or `seconds` pass."""
        now = time.monotonic()
        deadline, quiet_since = now + seconds, now
        while time.monotonic() < deadline:
            if self.registry.inflight:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet:
                return
            await asyncio.sleep(0.01)

    def _answered(self) -> int:
        return sum(v.stats.success.count + v.stats.fail.count for v in self.registry.all_loaded())


async def serve(config: ServerConfig, on_started: Callable[[int], None] | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the port is announced: a stop may follow at once
        loop.add_signal_handler(sig, stop.set)
    server = EdgeqServer(config)
    port = await server.start()
    if on_started:
        on_started(port)
    await stop.wait()
    for sig in (signal.SIGTERM, signal.SIGINT):  # already stopping: a repeated signal changes nothing
        loop.add_signal_handler(sig, lambda: log.info("already stopping"))
    log.info("stopping: finishing in-flight requests (up to %.0f s)", config.grace_seconds)
    await server.stop()


def serve_forever(**options: Any) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig.from_env(**options)

    def announce(port: int) -> None:
        print(LISTENING.format(host=config.host, port=port), flush=True)

    asyncio.run(serve(config, announce))
    # Stopped cleanly; a second SIGTERM while the interpreter tears OpenVINO down must not turn
    # the exit into a signal death.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def main() -> None:
    parser = argparse.ArgumentParser(description="edgeq gRPC server")
    add_arguments(parser)
    serve_forever(**options_from_args(parser.parse_args()))


if __name__ == "__main__":
    main()
