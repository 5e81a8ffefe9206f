"""The server's settings: one dataclass from which `edgeq serve`'s flags and the EDGEQ_* variables come.

Importing this module loads no gRPC, so `edgeq --help` stays light; the CLI builds the `serve`
flags from `add_arguments` and the server reads `from_env`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeq.errors import InvalidArgument
from edgeq.runtime.engine import BatchingPolicy
from edgeq.runtime.memory import default_inflight_bytes
from edgeq.runtime.registry import RuntimeConfig


def _option(help_text: str, default: Any = None, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass
class ServerConfig:
    """Server settings; from flags, or from EDGEQ_<FIELD> environment variables (`from_env`)."""

    store: Path = _option("model store directory", Path("store"))
    create: bool = _option("create the store directory if it does not exist (without it a missing store is an "
                           "error: a mistyped path would serve nothing)", False)
    host: str = _option("address to listen on", "127.0.0.1")
    port: int = _option("gRPC port (0 picks a free one)", 8001)
    http_port: int = _option("KServe v2 REST/HTTP port, same TLS and tokens as gRPC (0 picks a free one)", 8000)
    metrics_port: int | None = _option("Prometheus metrics port (unset: no metrics endpoint; 0: a free one)")
    max_message_bytes: int = _option("largest gRPC message", 64 * 2**20)
    max_upload_bytes: int = _option("largest artifact upload", 2 * 2**30)
    max_batch_size: int = _option("most rows one inference request may carry", 64)
    keep_versions: int = _option("latest N versions of each model stay loaded", 1)
    max_queued_jobs: int = _option("quantization jobs waiting at most", 16)
    refresh_seconds: float = _option("how often the store is checked for new versions", 1.0)
    grace_seconds: float = _option("how long a stop waits for in-flight requests", 10.0)
    tls_cert: Path | None = _option("PEM certificate chain (TLS)")
    tls_key: Path | None = _option("PEM private key (TLS)")
    tls_client_ca: Path | None = _option("require client certificates signed by this CA (mTLS)")
    token_file: Path | None = _option("'<manage|infer> <token>' per line; management RPCs need one")
    require_infer_token: bool = _option("inference needs a token too", False)
    insecure: bool = _option("allow a non-loopback address without TLS or tokens", False)
    inference_threads: int | None = _option("OpenVINO threads per model (unset: the cores the CPU quota allows)")
    num_streams: str | None = _option("OpenVINO NUM_STREAMS (unset: the performance hint decides)")
    performance_hint: str = _option("OpenVINO hint: THROUGHPUT (many requests) or LATENCY (one request, all cores)",
                                    "THROUGHPUT", choices=("THROUGHPUT", "LATENCY"))
    cpu_pinning: bool | None = _option("OpenVINO ENABLE_CPU_PINNING true/false (unset: OpenVINO decides)")
    batch_delay_us: int = _option("dynamic batching: how long a small batch may wait for more requests "
                                  "(0: never wait, merge only what queued while the CPU was busy)", 0)
    preferred_batch_sizes: str = _option("dynamic batching: comma-separated batch sizes worth waiting for", "")
    max_merged_batch: int = _option("dynamic batching: most rows merged into one OpenVINO call (1: no merging)", 64)
    static_batch_one: bool = _option("also compile a static batch-1 copy of dynamic-batch models for one-row "
                                     "requests: faster, the model's memory twice (true/false)", True)
    max_inflight_bytes: int = _option("bytes of requests being read, queued and run; beyond it RESOURCE_EXHAUSTED "
                                      "(0: a quarter of the machine's or container's memory)", 0)
    max_queue: int = _option("requests waiting per model version; beyond it RESOURCE_EXHAUSTED", 256)
    worker_memory_bytes: int | None = _option("private memory a quantization job's worker may use (unset: 3/4 of the "
                                              "machine's or container's memory; 0: no limit)")
    state_dir: Path | None = _option("jobs database and uploads (unset: the store; lets the store be read-only)")

    def __post_init__(self) -> None:
        self.store = Path(self.store)
        self.state_dir = Path(self.state_dir) if self.state_dir else self.store
        if not all(0 <= p < 65536 for p in (self.port, self.http_port, self.metrics_port or 0)):
            raise InvalidArgument("ports must be in 0..65535")
        if self.max_message_bytes < 1 << 20:
            raise InvalidArgument("max message size must be at least 1 MiB")
        self.performance_hint = self.performance_hint.upper()
        if self.performance_hint not in ("THROUGHPUT", "LATENCY"):
            raise InvalidArgument(f"performance hint must be THROUGHPUT or LATENCY, not {self.performance_hint!r}")
        if self.keep_versions < 1 or self.max_batch_size < 1 or self.max_queued_jobs < 1:
            raise InvalidArgument("keep_versions, max_batch_size and max_queued_jobs must be positive")
        if self.max_inflight_bytes < 0:
            raise InvalidArgument("max_inflight_bytes must be >= 0 (0: a quarter of the memory)")
        if self.max_merged_batch < 1 or self.max_queue < 1 or not 0 <= self.batch_delay_us <= 1_000_000:
            raise InvalidArgument("max_merged_batch and max_queue must be positive, batch_delay_us in 0..1000000")
        self.batching_policy()  # validates the preferred sizes
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca and not self.tls_cert:
            raise InvalidArgument("--tls-client-ca (mTLS) needs --tls-cert and --tls-key")
        if self.require_infer_token and not self.token_file:
            raise InvalidArgument("--require-infer-token needs --token-file")
        if not is_loopback(self.host) and not (self.tls_cert or self.token_file) and not self.insecure:
            raise InvalidArgument(
                f"refusing to listen on {self.host} without TLS or tokens: anyone on the network could upload "
                "models, run jobs and delete versions. Give --tls-cert/--tls-key and/or --token-file, or --insecure "
                "if this network is trusted")

    def batching_policy(self) -> BatchingPolicy:
        try:
            preferred = tuple(int(s) for s in self.preferred_batch_sizes.split(",") if s.strip())
        except ValueError:
            raise InvalidArgument(f"preferred batch sizes must be integers: {self.preferred_batch_sizes!r}") from None
        if any(not 1 <= size <= self.max_merged_batch for size in preferred):
            raise InvalidArgument(f"preferred batch sizes must be in 1..{self.max_merged_batch}")
        return BatchingPolicy(self.max_merged_batch, self.batch_delay_us, preferred, self.max_queue)

    def runtime_config(self) -> RuntimeConfig:
        return RuntimeConfig(self.max_batch_size, self.keep_versions, self.num_streams, self.inference_threads,
                             self.performance_hint, self.batching_policy(), self.cpu_pinning, self.static_batch_one,
                             self.inflight_bytes())

    def inflight_bytes(self) -> int:
        return self.max_inflight_bytes or default_inflight_bytes()

    @classmethod
    def from_env(cls, prefix: str = "EDGEQ_", **overrides: Any) -> "ServerConfig":
        """Settings from EDGEQ_<FIELD> variables; explicit `overrides` (flags) win."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            raw = os.environ.get(prefix + item.name.upper())
            if raw is not None:
                values[item.name] = _parse(_value_type(item.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _value_type(annotation: Any) -> type:
    """`int | None` -> int (the annotations are strings under `from __future__ import annotations`)."""
    hint = typing.get_type_hints(ServerConfig).get(annotation, annotation) if isinstance(annotation, str) else annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint  # type: ignore[no-any-return]


def _parse(kind: type, raw: str) -> Any:
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return kind(raw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`edgeq serve`'s flags, one per ServerConfig field, with the field's help and default."""
    hints = typing.get_type_hints(ServerConfig)
    for item in fields(ServerConfig):
        kind = _value_type(hints[item.name])
        flag = "--" + item.name.replace("_", "-")
        default = None if item.default is MISSING else item.default
        help_text = f"{item.metadata.get('help', '')} (EDGEQ_{item.name.upper()}" + \
            (f"; default {default})" if default not in (None, "", False) else ")")
        if kind is bool and default is False:
            parser.add_argument(flag, action="store_true", default=None, help=help_text)
        elif kind is bool:
            parser.add_argument(flag, type=lambda text: _parse(bool, text), metavar="true|false", help=help_text)
        else:
            parser.add_argument(flag, type=kind, choices=item.metadata.get("choices"), help=help_text)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags a user gave (unset ones fall back to EDGEQ_* variables, then the defaults)."""
    return {item.name: getattr(args, item.name) for item in fields(ServerConfig)
            if getattr(args, item.name, None) is not None}


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
