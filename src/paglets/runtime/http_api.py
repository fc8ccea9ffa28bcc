"""The host's HTTP API server (aiohttp) on the socket the host reserved (network.md §1).

One middleware guards every request, in the order the spec fixes: authentication on headers
alone (§1.3), then the route (404 `no-route`, 405 `method-not-allowed`), then the media type
(415), all before a body byte is read; any exception a handler raises becomes the error body
of §1.5. Handlers live in `http_routes` and `http_events`; `transfer_routes` and
`artifact_routes` are mounted as they come.

Handlers never block the event loop: anything that may run a paglet handler or touch the
store goes to the host's worker pool through `run_blocking`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from paglets.runtime import http_events, http_routes, http_wire, peer_socket, relay_hub
from paglets.runtime.admin_routes import admin_routes
from paglets.runtime.connection_limit import LimitedSockSite
from paglets.runtime.http_artifacts import artifact_routes
from paglets.runtime.http_auth import Auth, host_id_of, mesh_hello
from paglets.runtime.http_idempotency import IdempotencyCache
from paglets.runtime.http_ui import ui_routes
from paglets.runtime.http_wire import HttpRefusal
from paglets.runtime.jobs_routes import jobs_routes
from paglets.runtime.mesh_routes import mesh_routes
from paglets.runtime.metrics_routes import metrics_routes
from paglets.runtime.operator_actions import operator_routes
from paglets.runtime.service_routes import service_routes
from paglets.runtime.transfer_routes import transfer_routes

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["CONTROL_BODY_BYTES", "HttpServer"]

MiB = 1024 * 1024
CONTROL_BODY_BYTES = 1 * MiB
KEEPALIVE_SECONDS = 75.0
MAX_HEADER_BYTES = 16 * 1024
SHUTDOWN_SECONDS = 2.0


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class HttpServer:
    """Serves one host's HTTP API. `start(sock)` and `stop()` run on the host's loop."""

    def __init__(self, host: Host) -> None:
        self.host = host
        tls_cert, tls_key, tls_ca = getattr(host, "tls", (None, None, None))
        self.auth = Auth(host.api_key, client_ca=bool(tls_ca))
        self.control_limit = CONTROL_BODY_BYTES
        self.message_limit = int(host.max_body_bytes)
        self.state_limit = int(host.max_state_bytes)
        self.events = http_events.EventFeed(self)
        self.idempotency = IdempotencyCache()
        self.host_id: str = ""
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self._tls = (tls_cert, tls_key, tls_ca)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.peer: peer_socket.PeerServer | None = None

    # -- start and stop ----------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._guard],
            client_max_size=max(self.message_limit, self.state_limit, CONTROL_BODY_BYTES),
        )
        app[http_wire.SERVER_KEY] = self
        router = app.router
        for method, path, handler in http_routes.routes(self):
            router.add_route(method, path, handler)
        for method, path, handler in http_events.routes(self):
            router.add_route(method, path, handler)
        router.add_get("/mesh/hello", mesh_hello)
        app.add_routes(transfer_routes(self.host))
        app.add_routes(artifact_routes(self.host))
        app.add_routes(mesh_routes(self.host))
        app.add_routes(service_routes(self.host))
        app.add_routes(admin_routes(self.host))
        app.add_routes(ui_routes(self.host))
        app.add_routes(metrics_routes(self.host))
        app.add_routes(operator_routes(self.host))  # POST /transfers/{tid}/resolve
        app.add_routes(jobs_routes(self.host))  # GET /jobs, /jobs/queue, /jobs/groups
        self.peer = peer_socket.mount(app, self)  # GET /peer/ws: the message fast path
        relay_hub.mount(app, self.host)  # /relay/ws, /relay/hosts/{name}/..., diagnostics
        return app

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert, key, ca = self._tls
        if not cert:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        if ca:
            context.load_verify_locations(ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def start(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self.host_id = host_id_of(self.host)
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self.app = self.build_app()
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            keepalive_timeout=KEEPALIVE_SECONDS,
            # An unread body is never drained: the connection closes after the answer
            # (a refused upload costs no more than its first buffer).
            lingering_time=0,
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
        await self._runner.setup()
        await LimitedSockSite(
            self._runner,
            sock,
            limit=self.host.max_connections,
            ssl_context=self._ssl_context(),
        ).start()

    async def serve_also(self, sock: socket.socket) -> None:
        """One more listener for the same app (`--bind-public`: one listener per bound
        address, same port, network.md §1.1); `stop()` closes it with the rest."""
        assert self._runner is not None, "start() first"
        await LimitedSockSite(
            self._runner,
            sock,
            limit=self.host.max_connections,
            ssl_context=self._ssl_context(),
        ).start()

    async def stop(self) -> None:
        self.events.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started_monotonic

    # -- the worker-pool bridge ----------------------------------------------------------

    def run_blocking(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run `fn(*args)` on the host's worker pool; the returned future completes on
        this loop (thread hop both ways, no executor machinery)."""
        loop = self._loop
        assert loop is not None, "the HTTP server is not started"
        future: asyncio.Future[Any] = loop.create_future()

        def job() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits
                    loop.call_soon_threadsafe(_set_exception, future, exc)
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_result, future, result)

        try:
            self.host.pool.submit(job)
        except RuntimeError:
            raise HttpRefusal(
                f"host {self.host.name!r} is stopping and takes no new requests",
                code="draining",
                error_type="RemoteHostError",
                headers={"Retry-After": "1"},
            ) from None
        return future

    # -- the guard -----------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            self.auth.check(request)
            http_exception = request.match_info.http_exception
            if http_exception is not None:
                raise _route_refusal(request, http_exception)
            refusal = http_wire.media_type_refusal(request)
            if refusal is not None:
                raise refusal
            return await self.idempotency.run(request, handler)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return self._refused(request, _http_refusal(request, exc))
        except Exception as exc:
            return self._refused(request, exc)

    def _refused(self, request: web.Request, exc: BaseException) -> web.Response:
        response = http_wire.error_response(request, exc, self.host.name)
        if request.body_exists and not request.content.is_eof():
            # A body left unread is never drained: say so, and the connection closes.
            response.force_close()
        return response


def _route_refusal(request: web.Request, exc: web.HTTPException) -> HttpRefusal:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return HttpRefusal(
            f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
            code="method-not-allowed",
            headers={"Allow": ",".join(allowed)},
        )
    if isinstance(exc, web.HTTPNotFound):
        return HttpRefusal(f"no route {request.method} {request.path}", code="no-route")
    return _http_refusal(request, exc)


def _http_refusal(request: web.Request, exc: web.HTTPException) -> HttpRefusal:
    """aiohttp's own HTTP errors (raised by mounted handlers) in the §1.5 body."""
    codes = {
        404: "no-route",
        405: "method-not-allowed",
        413: "body-too-large",
        415: "unsupported-media-type",
    }
    code = codes.get(exc.status, f"http-{exc.status}")
    if exc.status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        return _route_refusal(request, exc)
    text = exc.text if exc.text and exc.text != exc.reason else exc.reason
    return HttpRefusal(f"{request.method} {request.path}: {text}", code=code, status=exc.status)
