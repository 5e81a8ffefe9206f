"""Build and run the one `grpc.aio` server: inference, management, health, reflection, metrics.

    python -m edgeq_server.app --store DIR --port 8001       (or: edgeq serve ...)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from edgeq._offline import disable_telemetry
from edgeq.artifacts import ArtifactStore, sweep_partial_uploads
from edgeq.errors import InvalidArgument
from edgeq.jobs.db import FINAL_STATES, JobDB
from edgeq.jobs.runner import JobRunner
from edgeq.runtime.registry import ModelRegistry, RuntimeConfig
from edgeq.store import ModelStore
from edgeq_server.auth import TokenAuth, TokenTable
from edgeq_server.gen.edgeq.v1 import edgeq_pb2, edgeq_pb2_grpc
from edgeq_server.gen.inference import grpc_service_pb2, grpc_service_pb2_grpc
from edgeq_server.inference import InferenceServicer
from edgeq_server.interceptors import ErrorsAndMetrics
from edgeq_server.launch import LISTENING, METRICS
from edgeq_server.management import ArtifactsServicer, ModelsServicer, QuantizationServicer
from edgeq_server.metrics import ServerMetrics
from edgeq_server.startup_checks import warn_insecure_settings

log = logging.getLogger("edgeq.server")
QUANTIZE_MODULES = ("nncf", "torch", "timm")


@dataclass
class ServerConfig:
    """Server settings; from flags, or from EDGEQ_* environment variables (`from_env`)."""

    store: Path = Path("store")
    host: str = "127.0.0.1"
    port: int = 8001
    metrics_port: int | None = None  # None: no metrics endpoint; 0: a free port
    max_message_bytes: int = 64 * 2**20
    max_upload_bytes: int = 2 * 2**30
    max_batch_size: int = 64
    keep_versions: int = 1
    max_queued_jobs: int = 16
    refresh_seconds: float = 1.0
    grace_seconds: float = 10.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: clients must present a certificate it signed (mTLS)
    token_file: Path | None = None
    require_infer_token: bool = False
    insecure: bool = False  # allow a non-loopback address without TLS or tokens
    inference_threads: int | None = None  # OpenVINO threads per model; set from the container's CPU limit
    num_streams: str | None = None  # OpenVINO NUM_STREAMS; default: the throughput hint decides
    performance_hint: str = "THROUGHPUT"  # or LATENCY: every core on one request, for concurrency 1
    state_dir: Path | None = None  # jobs database and uploads; default: the store (lets the store be read-only)

    def __post_init__(self) -> None:
        self.store = Path(self.store)
        self.state_dir = Path(self.state_dir) if self.state_dir else self.store
        if not 0 <= self.port < 65536 or not 0 <= (self.metrics_port or 0) < 65536:
            raise InvalidArgument("ports must be in 0..65535")
        if self.max_message_bytes < 1 << 20:
            raise InvalidArgument("max message size must be at least 1 MiB")
        self.performance_hint = self.performance_hint.upper()
        if self.performance_hint not in ("THROUGHPUT", "LATENCY"):
            raise InvalidArgument(f"performance hint must be THROUGHPUT or LATENCY, not {self.performance_hint!r}")
        if self.keep_versions < 1 or self.max_batch_size < 1 or self.max_queued_jobs < 1:
            raise InvalidArgument("keep_versions, max_batch_size and max_queued_jobs must be positive")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca and not self.tls_cert:
            raise InvalidArgument("--tls-client-ca (mTLS) needs --tls-cert and --tls-key")
        if self.require_infer_token and not self.token_file:
            raise InvalidArgument("--require-infer-token needs --token-file")
        if not _is_loopback(self.host) and not (self.tls_cert or self.token_file) and not self.insecure:
            raise InvalidArgument(
                f"refusing to listen on {self.host} without TLS or tokens: anyone on the network could upload "
                "models, run jobs and delete versions. Give --tls-cert/--tls-key and/or --token-file, or --insecure "
                "if this network is trusted")

    @classmethod
    def from_env(cls, prefix: str = "EDGEQ_", **overrides: Any) -> "ServerConfig":
        """Settings from EDGEQ_<FIELD> variables; explicit `overrides` (flags) win."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = os.environ.get(prefix + item.name.upper())
            if raw is not None:
                hint = str(item.type)
                convert: Any = (Path if "Path" in hint else _flag if "bool" in hint else int if "int" in hint
                                else float if "float" in hint else str)
                values[item.name] = convert(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        warn_insecure_settings(config)
        self.config = config
        self.store = ModelStore(config.store)
        assert config.state_dir is not None
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts = ArtifactStore(config.state_dir, config.max_upload_bytes)
        sweep_partial_uploads(self.artifacts)
        self.jobs = JobDB(config.state_dir / ".jobs.sqlite", config.max_queued_jobs)
        self.registry = ModelRegistry(self.store, RuntimeConfig(config.max_batch_size, config.keep_versions,
                                                                config.num_streams, config.inference_threads,
                                                                config.performance_hint))
        self.metrics = ServerMetrics()
        self.metrics.watch(lambda: len(self.registry.all_loaded()), lambda: self.registry.inflight, self.jobs.count,
                           ("QUEUED", "RUNNING", *FINAL_STATES))
        self.health = health.aio.HealthServicer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refresh_now = asyncio.Event()
        self.runner = JobRunner(config.store, config.state_dir, self.jobs, on_published=self._published)
        self.ready = False
        options = [("grpc.max_receive_message_length", config.max_message_bytes),
                   ("grpc.max_send_message_length", config.max_message_bytes)]
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if config.token_file:
            interceptors.append(TokenAuth(TokenTable.load(config.token_file), config.require_infer_token))
        interceptors.append(ErrorsAndMetrics(self.metrics))
        self.server = grpc.aio.server(interceptors=interceptors, options=options)
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self.registry, lambda: self.ready), self.server)
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
        self.port = 0
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
        if self.config.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.config.metrics_port, self.config.host)
            print(METRICS.format(host=self.config.host, port=self.metrics_port), flush=True)
        self.runner.start()
        self.ready = True
        for name in [*self.service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._refresher = asyncio.create_task(self._refresh_loop())
        log.info("edgeq serving %s on %s:%d", self.config.store, self.config.host, self.port)
        return self.port

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._refresh_now.wait(), self.config.refresh_seconds)
            except asyncio.TimeoutError:
                pass
            self._refresh_now.clear()
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
        inflight = self.registry.inflight
        jobs_stopped = asyncio.ensure_future(asyncio.to_thread(self.runner.stop))
        await self.server.stop(self.config.grace_seconds)
        log.info("stopped: %d inference requests in flight at the signal, %d unfinished after the grace period",
                 inflight, self.registry.inflight)
        await jobs_stopped


async def serve(config: ServerConfig, on_started: Callable[[int], None] | None = None) -> None:
    server = EdgeqServer(config)
    port = await server.start()
    if on_started:
        on_started(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: finishing in-flight requests (up to %.0f s)", config.grace_seconds)
    await server.stop()


def serve_forever(**options: Any) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig.from_env(**options)

    def announce(port: int) -> None:
        print(LISTENING.format(host=config.host, port=port), flush=True)

    asyncio.run(serve(config, announce))


def main() -> None:
    from edgeq.cli_remote import add_serve_arguments, options_from_args

    parser = argparse.ArgumentParser(description="edgeq gRPC server")
    add_serve_arguments(parser)
    serve_forever(**options_from_args(parser.parse_args()))


if __name__ == "__main__":
    main()
