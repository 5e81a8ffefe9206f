"""The KServe v2 REST routes (aiohttp), thin over `edgeq_server.dataplane`, in the server's event loop.

One middleware does for every route what the gRPC interceptors do for every RPC: the bearer token
check (`edgeq_server.auth`), edgeq errors to HTTP statuses with a `{"error": ...}` body
(`edgeq_server.rest.errors`, the one mapping) and the request metrics (`edgeq_server.metrics`).
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from edgeq.errors import EdgeqError, InvalidArgument
from edgeq.runtime.registry import ModelRegistry
from edgeq_server import dataplane
from edgeq_server.auth import UNAUTHENTICATED, TokenTable, unauthenticated_message
from edgeq_server.metrics import ServerMetrics
from edgeq_server.rest import codec
from edgeq_server.rest.errors import PERMISSION_DENIED, error_body, status_of

log = logging.getLogger("edgeq.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN = ("ServerLive", "ServerReady")  # orchestrators probe these without tokens
MANAGE = ("RepositoryModelLoad", "RepositoryModelUnload")
NOT_READY = 400  # KServe v2: a health answer is its status, 200 true and 4xx false, with an empty body


@dataclass
class Access:
    tokens: TokenTable | None = None
    require_infer_token: bool = False

    def needed(self, endpoint: str) -> str | None:
        if self.tokens is None or endpoint in OPEN:
            return None
        if endpoint in MANAGE:
            return "manage"
        return "infer" if self.require_infer_token else None


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(value, separators=(",", ":")).encode(), status=status,
                        content_type=codec.JSON_TYPE)


def _error(status: int, message: str) -> web.Response:
    return web.Response(body=error_body(message), status=status, content_type=codec.JSON_TYPE)


def _health(ok: bool) -> web.Response:
    return web.Response(status=200 if ok else NOT_READY)


class Routes:
    """The handlers; `ready` says whether the server is ready (false while starting and draining)."""

    def __init__(self, registry: ModelRegistry, ready: Callable[[], bool], max_body_bytes: int):
        self.registry = registry
        self.ready = ready
        self.max_body_bytes = max_body_bytes

    @staticmethod
    def _model(request: web.Request) -> tuple[str, str]:
        return request.match_info["name"], request.match_info.get("version", "")

    async def live(self, request: web.Request) -> web.Response:
        return _health(True)

    async def server_ready(self, request: web.Request) -> web.Response:
        return _health(bool(self.ready()))

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json(dataplane.server_metadata())

    async def model_ready(self, request: web.Request) -> web.Response:
        return _health(dataplane.model_ready(self.registry, *self._model(request)))

    async def model_metadata(self, request: web.Request) -> web.Response:
        return _json(dataplane.model_metadata(self.registry, *self._model(request)))

    async def model_config(self, request: web.Request) -> web.Response:
        return _json(dataplane.model_config(self.registry, *self._model(request)))

    async def model_statistics(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "")
        return _json(dataplane.model_statistics(self.registry, name, request.match_info.get("version", "")))

    async def infer(self, request: web.Request) -> web.Response:
        name, version = self._model(request)
        self.registry.get(name, version)  # an unknown model is 404 before a bad body is 400
        # Admitted before the body is read, as ModelInfer is on gRPC: what the body may hold is reserved
        # from its Content-Length (the body cap when it is not sent), so a burst is refused, not read.
        most = min(request.content_length or self.max_body_bytes, self.max_body_bytes)
        with await self.registry.receiving(most) as reservation:
            body = await request.read()
            self.registry.received(reservation, len(body))
            decoded = codec.decode_request(body, request.headers.get(codec.HEADER_LENGTH))
            answer = await dataplane.infer(self.registry, name, version, decoded.inputs, decoded.outputs, reservation)
        body, headers = codec.encode_response(answer.target.name, str(answer.target.version), decoded, answer.names,
                                              answer.datatypes, answer.arrays)
        return web.Response(body=body, headers=headers)

    async def repository_index(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            options = json.loads(body) if body.strip() else {}
        except ValueError as error:
            raise InvalidArgument(f"the request body is not valid JSON: {error}") from None
        ready_only = bool(options.get("ready")) if isinstance(options, dict) else False
        return _json(dataplane.repository_index(self.registry, ready_only))

    async def load(self, request: web.Request) -> web.Response:
        await self.registry.load(request.match_info["name"])
        return _json({})

    async def unload(self, request: web.Request) -> web.Response:
        await self.registry.unload(request.match_info["name"])
        return _json({})


def _guard(access: Access, metrics: ServerMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route
        endpoint = (route.name or "unknown").removesuffix("Version").removesuffix("All")
        response = await _answer(request, handler, endpoint, access)
        metrics.http_requests.labels(endpoint, str(response.status)).inc()
        if response.status < 400:
            metrics.http_latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    return guard


async def _answer(request: web.Request, handler: Handler, endpoint: str, access: Access) -> web.StreamResponse:
    needed = access.needed(endpoint)
    if needed is not None and access.tokens is not None:
        header = request.headers.get("Authorization", "")
        refusal = access.tokens.refusal(header, needed)
        if refusal == UNAUTHENTICATED:
            return _error(401, unauthenticated_message(header, "this request needs an 'Authorization: Bearer <token>' header"))
        if refusal is not None:
            return _error(PERMISSION_DENIED, f"this request needs a token with the '{needed}' scope")
    try:
        return await handler(request)
    except EdgeqError as error:
        return _error(status_of(error), str(error))
    except web.HTTPException as error:  # aiohttp's own: no such route, wrong method, body too large
        return _error(error.status, error.reason if error.status != 413 else error.text or error.reason)
    except Exception as error:  # noqa: BLE001 - mapped to 500 here, once, with the traceback in the log
        log.exception("unexpected error in %s", endpoint)
        return _error(status_of(error), f"internal error in {endpoint}: {type(error).__name__}: {error}")


def build_app(registry: ModelRegistry, ready: Callable[[], bool], metrics: ServerMetrics, access: Access,
              max_body_bytes: int) -> web.Application:
    routes = Routes(registry, ready, max_body_bytes)
    app = web.Application(middlewares=[_guard(access, metrics)], client_max_size=max_body_bytes)
    add = app.router.add_route
    add("GET", "/v2/health/live", routes.live, name="ServerLive")
    add("GET", "/v2/health/ready", routes.server_ready, name="ServerReady")
    add("GET", "/v2", routes.server_metadata, name="ServerMetadata")
    add("GET", "/v2/models/stats", routes.model_statistics, name="ModelStatisticsAll")
    for prefix, suffix in (("/v2/models/{name}", ""), ("/v2/models/{name}/versions/{version}", "Version")):
        add("GET", prefix, routes.model_metadata, name=f"ModelMetadata{suffix}")
        add("GET", prefix + "/ready", routes.model_ready, name=f"ModelReady{suffix}")
        add("GET", prefix + "/config", routes.model_config, name=f"ModelConfig{suffix}")
        add("GET", prefix + "/stats", routes.model_statistics, name=f"ModelStatistics{suffix}")
        add("POST", prefix + "/infer", routes.infer, name=f"ModelInfer{suffix}")
    add("POST", "/v2/repository/index", routes.repository_index, name="RepositoryIndex")
    add("POST", "/v2/repository/models/{name}/load", routes.load, name="RepositoryModelLoad")
    add("POST", "/v2/repository/models/{name}/unload", routes.unload, name="RepositoryModelUnload")
    return app


def ssl_context(cert: Any, key: Any, client_ca: Any = None) -> ssl.SSLContext:
    """The gRPC door's TLS for HTTP too: the same certificate, key and (mTLS) client CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    if client_ca:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class HttpSite:
    """The HTTP front door's lifetime: bind, serve in the running loop, drain on stop."""

    def __init__(self, app: web.Application, host: str, port: int, context: ssl.SSLContext | None,
                 grace_seconds: float):
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.host, self.port, self.context, self.grace = host, port, context, grace_seconds

    async def start(self) -> int:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, ssl_context=self.context,
                           shutdown_timeout=self.grace)
        try:
            await site.start()
        except OSError as error:
            await self.runner.cleanup()
            raise InvalidArgument(f"cannot listen for HTTP on {self.host}:{self.port}: {error.strerror}") from None
        return int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        await self.runner.cleanup()
