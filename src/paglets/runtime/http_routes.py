"""Route handlers of the HTTP API: health, hosts, paglets, messages, multicast, diagnostics
(network.md §1.7, §1.8). Events and their stream are in `http_events`.

Every handler validates what it was given (agent id first, then the body against its
msgspec struct) before it looks anything up, and hands the work to the host's worker pool
unless it is a cheap in-memory read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from msgspec import UNSET

import paglets
from paglets.core.errors import (
    InvalidAgentError,
    PagletError,
    PagletMovedError,
    PagletTimeoutError,
)
from paglets.core.ids import validate_agent_id
from paglets.core.messages import RESERVED_KINDS
from paglets.persistence.policy import DeactivationRequest
from paglets.remote.transfer import TransferTicket
from paglets.runtime import agent_search
from paglets.runtime.http_auth import PROTOCOL
from paglets.runtime.http_bodies import (
    CreateBody,
    DeactivateBody,
    Empty,
    MoveBody,
    MulticastBody,
    SendBody,
    message_from,
    query_bool,
    query_int,
)
from paglets.runtime.http_diagnostics import diagnostics_import
from paglets.runtime.http_wire import (
    decode_body,
    invalid,
    read_body,
    refuse,
    reply,
    restore,
)
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.http_api import HttpServer

__all__ = ["routes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PAGE_MAX = 1000
UNPAGED_MAX = 10_000
DEADLINE_MAX_MS = 24 * 3600 * 1000
GRACE_SECONDS = 0.5  # the HTTP wait outlasts the runtime's own timeout by this much


def _expire(future: asyncio.Future[Any], timeout: float) -> None:
    if not future.done():
        error = PagletTimeoutError(
            f"no answer within {timeout:g}s; the handler may still be running",
            code="deadline-exceeded",
        )
        error.detail = {"outcome": "running"}  # type: ignore[attr-defined]
        future.set_exception(error)


async def _within(future: asyncio.Future[Any], timeout: float) -> Any:
    """Await a pool job, answering 504 (outcome `running`) when it outlasts `timeout`."""
    if not future.done():
        handle = asyncio.get_running_loop().call_later(
            timeout + GRACE_SECONDS, _expire, future, timeout
        )
        try:
            return await future
        finally:
            handle.cancel()
    return future.result()


def _as_paglets_errors(fn: Callable[[], Any], kind: str) -> Callable[[], Any]:
    """Errors that are the request's fault, not the host's, as paglets errors:

    * a builtin TimeoutError (a duplicate delivery id still being answered) is a timeout
      whose outcome is unknown;
    * the arguments of a reserved kind (`_clone`, `_dispatch`, ...) are read by the runtime
      itself, so a TypeError/ValueError there is a bad body.
    """
    reserved = kind in RESERVED_KINDS

    def run() -> Any:
        try:
            return fn()
        except PagletError:
            raise
        except TimeoutError:
            raise PagletTimeoutError(
                "no answer in time for a message already being delivered under this id",
                code="deadline-exceeded",
            ) from None
        except (TypeError, ValueError) as exc:
            if not reserved:
                raise
            raise invalid("$.message.args", f"{kind}: {exc}") from None

    return run


class Routes:
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.host = server.host

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _agent_id(request: web.Request) -> str:
        return validate_agent_id(request.match_info["id"])

    async def _body(self, request: web.Request, struct: type, limit: int | None = None) -> Any:
        data = await read_body(request, self.server.control_limit if limit is None else limit)
        return decode_body(request, data, struct)

    def _deadline(self, request: web.Request) -> float:
        raw = request.headers.get("X-Paglets-Deadline-Ms")
        if raw is None:
            return float(self.host.default_timeout)
        try:
            ms = int(raw)
        except ValueError:
            ms = 0
        if not 0 < ms <= DEADLINE_MAX_MS:
            refuse(
                f"X-Paglets-Deadline-Ms: {raw!r} is not a whole number of milliseconds "
                f"from 1 to {DEADLINE_MAX_MS}",
                code="bad-header",
                error_type="SerializationError",
            )
        return ms / 1000.0

    # -- host ----------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        host = self.host
        server = self.server
        body = host.health()
        capabilities: list[str] = list(body.get("capabilities") or ())
        if "events:stream" not in capabilities:
            capabilities.append("events:stream")
        if getattr(host, "metrics_enabled", False) and "metrics" not in capabilities:
            capabilities.append("metrics")  # GET /metrics (metrics.py)
        body.update(
            capabilities=capabilities,
            host_id=server.host_id or None,
            protocol=PROTOCOL,
            paglets_version=paglets.__version__,
            auth_required=server.auth.enabled,
            insecure=bool(getattr(host, "insecure", False)),
            tls=bool(server._tls[0]),
            crashed_count=host.store.count_agents("crashed"),
            draining=host.drain.active,
            uptime_s=round(server.uptime_s, 3),
        )
        monitor = getattr(host, "resource_monitor", None)  # jobs.md §1.1
        body.setdefault("resources", monitor.summary() if monitor is not None else {})
        body.setdefault("artifacts", _artifact_room(host))  # paglets doctor's storage check
        return reply(request, body)

    async def hosts(self, request: web.Request) -> web.Response:
        wanted = {s for s in request.query.getall("status", []) for s in s.split(",") if s}
        host = self.host
        out = []
        for ref in host.list_hosts():
            if ref.url == host.address and not ref.host_id:
                ref = dataclasses.replace(ref, host_id=self.server.host_id)
            if wanted and ref.status not in wanted:
                continue
            out.append(ref.to_wire())
        return reply(request, {"hosts": out})

    # -- paglets -------------------------------------------------------------------------

    async def list_agents(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "active")
        if state not in ("active", "inactive", "crashed", "superseded", "all"):
            refuse(
                f"state={state!r}: use active, inactive, crashed, superseded or all",
                code="bad-query",
                error_type="SerializationError",
            )
        include_state = query_bool(request, "include_state")
        limit = query_int(request, "limit", None)
        if limit is not None and limit > PAGE_MAX:
            refuse(
                f"limit={limit} is over the page maximum of {PAGE_MAX}; page with offset=",
                code="bad-query",
                error_type="SerializationError",
            )
        cursor = request.query.get("cursor")
        offset = query_int(request, "offset", 0)
        if cursor:
            offset = query_int(request, "cursor", 0)
        body = await self.server.run_blocking(
            self._page,
            state,
            include_state,
            offset,
            limit,
            request.query.get("class"),
            request.query.get("q"),
        )
        return reply(request, body)

    def _page(
        self,
        state: str,
        include_state: bool,
        offset: int,
        limit: int | None,
        wanted_class: str | None,
        q: str | None,
    ) -> dict[str, Any]:
        host = self.host
        store = host.store
        active = state in ("active", "all")
        inactive = state in ("inactive", "all")
        crashed = state in ("crashed", "all")
        if wanted_class or q:
            # Filtered, counted and paged by SQLite: never every summary at once.
            page, total = agent_search.filtered_page(
                host,
                active=active,
                inactive=inactive,
                crashed=crashed,
                wanted_class=wanted_class,
                q=q,
                offset=offset,
                limit=UNPAGED_MAX if limit is None else limit,
                include_state=include_state,
            )
            end = offset + len(page)
            return {
                "agents": page,
                "next_cursor": str(end) if end < total and page else None,
                "total": total,
                "truncated": limit is None and total - offset > UNPAGED_MAX,
            }
        total = (
            (len(host.registry.live) if active else 0)
            + (store.count_agents("inactive") if inactive else 0)
            + (store.count_agents("crashed") if crashed else 0)
        )
        truncated = False
        if limit is None:  # old callers: one page of at most UNPAGED_MAX
            limit = UNPAGED_MAX
            truncated = total - offset > UNPAGED_MAX
        page = []
        if active or inactive:
            page = host.list_agents(
                active=active,
                inactive=inactive,
                include_state=include_state,
                offset=offset,
                limit=limit,
            )
        if crashed and len(page) < limit:
            before = (len(host.registry.live) if active else 0) + (
                store.count_agents("inactive") if inactive else 0
            )
            skip = max(0, offset - before)
            for row in store.list_agents(status="crashed", offset=skip, limit=limit - len(page)):
                page.append(host.agent_info(row.agent_id))
        end = offset + len(page)
        return {
            "agents": page,
            "next_cursor": str(end) if end < total and page else None,
            "total": total,
            "truncated": truncated,
        }

    async def create(self, request: web.Request) -> web.Response:
        server = self.server
        self.host.drain.check_create()  # 503 draining + Retry-After (network.md §5)
        data = await read_body(
            request, server.state_limit, code="state-too-large", what="create body"
        )
        body: CreateBody = decode_body(request, data, CreateBody)
        if body.envelope is not UNSET:
            refuse(
                "POST /agents takes {agent_class_name, state_class_name, state, init, agent_id}; "
                "paglets 2.0's {envelope} bodies (pickled state) are not accepted",
                code="legacy-envelope",
                error_type="SerializationError",
            )
        if not body.agent_class_name:
            raise invalid("$.agent_class_name", "required: the paglet class as 'module:QualName'")
        agent_id = body.agent_id
        if agent_id is not None:
            validate_agent_id(agent_id)
        state = restore(body.state, request)
        init = restore(body.init, request)
        name = body.agent_class_name
        proxy = await server.run_blocking(
            lambda: self.host.create(name, state, init=init, agent_id=agent_id)
        )
        return reply(request, {"proxy": proxy.to_wire()})

    async def info(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        return reply(request, await self.server.run_blocking(self.host.agent_info, agent_id))

    async def state(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        host = self.host

        def job() -> dict[str, Any]:
            info = host.agent_info(agent_id)
            live = agent_id in host.registry.live
            info["state"] = codec.to_wire_form(host.get_state(agent_id))
            info["state_source"] = "live" if live else "checkpoint"
            return info

        return reply(request, await self.server.run_blocking(job))

    async def mailbox(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        host = self.host
        if agent_id in host.registry.live:
            try:
                status = host.mailbox_status(agent_id)
            except InvalidAgentError:
                status = None  # left between the check and the read
            if status is not None:
                return reply(request, {**status, "held": 0})

        def job() -> dict[str, Any]:
            if agent_id in host.registry.live:
                return {**host.mailbox_status(agent_id), "held": 0}
            if host.store.get_agent(agent_id) is None:
                raise InvalidAgentError(
                    f"no paglet {agent_id!r} on host {host.name!r}", code="agent-not-found"
                )
            held = host.store.count_queued(agent_id)
            return {"queued": 0, "in_flight": 0, "delivered": 0, "failed": 0, "held": held}

        return reply(request, await self.server.run_blocking(job))

    # -- lifecycle -----------------------------------------------------------------------

    @staticmethod
    def _target(request: web.Request, body: MoveBody, *, required: bool) -> Any:
        if body.ticket is not None:
            try:
                return TransferTicket.from_wire(restore(body.ticket, request))
            except (TypeError, ValueError) as exc:
                raise invalid("$.ticket", str(exc)) from None
        if body.target is None:
            if required:
                raise invalid("$", "needs 'ticket' (a transfer ticket) or 'target' (a URL or name)")
            return None
        try:
            TransferTicket.from_target(body.target)
        except (TypeError, ValueError) as exc:
            raise invalid("$.target", str(exc)) from None
        return body.target

    async def dispatch(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        target = self._target(request, await self._body(request, MoveBody), required=True)
        proxy = await self.server.run_blocking(self.host.dispatch, agent_id, target)
        return reply(
            request,
            {
                "proxy": proxy.to_wire(),
                "transfer_id": getattr(proxy, "transfer_id", None),
                "epoch": getattr(proxy, "epoch", None),
                "acknowledged": proxy.acknowledged,
            },
        )

    async def clone(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        target = self._target(request, await self._body(request, MoveBody), required=False)
        proxy = await self.server.run_blocking(self.host.clone, agent_id, target)
        return reply(
            request,
            {"proxy": proxy.to_wire(), "transfer_id": getattr(proxy, "transfer_id", None)},
        )

    async def retract(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        target = self._target(request, await self._body(request, MoveBody), required=False)
        host = self.host
        proxy = await self.server.run_blocking(
            lambda: host.retract(host.address, agent_id, target=target)
        )
        return reply(request, {"proxy": proxy.to_wire()})

    async def deactivate(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        body: DeactivateBody = await self._body(request, DeactivateBody)
        deactivation = None
        if body.request is not None:
            try:
                deactivation = DeactivationRequest.from_wire(restore(body.request, request))
            except (TypeError, ValueError) as exc:
                raise invalid("$.request", str(exc)) from None
        proxy = await self.server.run_blocking(self.host.deactivate, agent_id, deactivation)
        return reply(request, {"proxy": proxy.to_wire(), "ok": True})

    async def activate(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        await self._body(request, Empty)
        proxy = await self.server.run_blocking(self.host.activate, agent_id)
        return reply(request, {"proxy": proxy.to_wire()})

    async def restart(self, request: web.Request) -> web.Response:
        from paglets.runtime.operator_actions import restart_crashed

        agent_id = self._agent_id(request)
        await self._body(request, Empty)
        proxy = await self.server.run_blocking(restart_crashed, self.host, agent_id)
        return reply(request, {"proxy": proxy.to_wire()})

    async def dispose(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        await self._body(request, Empty)
        await self.server.run_blocking(self.host.dispose, agent_id)
        return reply(request, {"ok": True})

    # -- messages ------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        server = self.server
        data = await read_body(request, server.message_limit)
        body: SendBody = decode_body(request, data, SendBody)
        message = message_from(body.message, request)
        timeout = self._deadline(request)
        oneway = body.oneway
        deliver = self.host.delivery.send
        activate = body.activate_if_inactive
        no_delay = body.no_delay

        def job() -> Any:
            # follow=False: a paglet that moved away is answered with 307, and the caller
            # follows it (network.md §1.6), rather than this host relaying the message.
            return deliver(
                agent_id,
                message,
                oneway=oneway,
                activate_if_inactive=activate,
                no_delay=no_delay,
                timeout=timeout,
                follow=False,
                from_wire=True,
            )

        result = await _within(server.run_blocking(_as_paglets_errors(job, message.kind)), timeout)
        if oneway:
            return reply(request, {"queued": True, "message_id": message.message_id})
        if (
            type(result) is dict
            and len(result) == 2
            and result.get("queued") is True
            and result.get("message_id") == message.message_id
        ):
            return reply(request, result)  # held for an inactive paglet (api.md §2.7)
        return reply(request, {"result": result})

    async def multicast(self, request: web.Request) -> web.Response:
        server = self.server
        data = await read_body(request, server.message_limit)
        body: MulticastBody = decode_body(request, data, MulticastBody)
        message = message_from(body.message, request)
        timeout = self._deadline(request)
        exclude = set(body.exclude)
        subscribers_only = body.subscribers_only
        host = self.host

        def job() -> list[dict[str, Any]]:
            kind = message.kind
            pending = []
            for cell in list(host.registry.live.values()):
                if cell.agent_id in exclude:
                    continue
                subscriptions = cell.subscriptions
                if subscriptions is None:
                    if subscribers_only:
                        continue
                elif kind not in subscriptions:
                    continue
                pending.append(
                    (cell.agent_id, host.deliver_future(cell.agent_id, message, timeout=timeout))
                )
            deadline = time.monotonic() + timeout
            replies: list[dict[str, Any]] = []
            for agent_id, future in pending:
                try:
                    result = future.get_reply(max(0.0, deadline - time.monotonic()))
                    replies.append({"agent_id": agent_id, "result": result})
                except PagletError as exc:
                    wire = _error_wire(exc, host.name)
                    replies.append({"agent_id": agent_id, "error": wire})
            return replies

        replies = await _within(server.run_blocking(job), timeout)
        return reply(request, {"replies": replies})

    async def legacy(self, request: web.Request) -> web.Response:
        refuse(
            f"{request.path} was paglets 2.0's relay polling; relay nodes now use GET /relay/ws",
            code="legacy-route",
        )


def _error_wire(exc: BaseException, host_name: str) -> dict[str, Any]:
    from paglets.core.errors import error_to_wire

    wire = error_to_wire(exc, host_name=host_name, with_traceback=False)
    wire.setdefault("host_name", host_name)
    return wire


def _pointer_aware(server: HttpServer, handler: Handler) -> Handler:
    """An agent route whose paglet is gone from here: a forwarding pointer turns the
    404 into `307 moved` (network.md §1.6)."""
    host = server.host

    async def route(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except InvalidAgentError as exc:
            missing = getattr(host, "missing", None)
            if exc.code != "agent-not-found" or missing is None:
                raise
            found = await server.run_blocking(missing, request.match_info["id"])
            if isinstance(found, PagletMovedError):
                raise found from None
            raise

    return route


def routes(server: HttpServer) -> list[tuple[str, str, Any]]:
    r = Routes(server)
    agent = "/agents/{id}"
    table = [
        ("GET", "/health", r.health),
        ("GET", "/hosts", r.hosts),
        ("GET", "/agents", r.list_agents),
        ("POST", "/agents", r.create),
        ("GET", agent, r.info),
        ("GET", agent + "/state", r.state),
        ("GET", agent + "/mailbox", r.mailbox),
        ("POST", agent + "/messages", r.send),
        ("POST", agent + "/dispatch", r.dispatch),
        ("POST", agent + "/clone", r.clone),
        ("POST", agent + "/retract", r.retract),
        ("POST", agent + "/deactivate", r.deactivate),
        ("POST", agent + "/activate", r.activate),
        ("POST", agent + "/dispose", r.dispose),
        ("POST", agent + "/restart", r.restart),
        ("POST", "/multicast", r.multicast),
        ("POST", "/diagnostics/import", diagnostics_import),
        ("*", "/relay/connect", r.legacy),
        ("*", "/relay/poll/{name}", r.legacy),
        ("*", "/relay/ack/{id}", r.legacy),
    ]
    return [
        (method, path, _pointer_aware(server, fn) if path.startswith(agent) else fn)
        for method, path, fn in table
    ]


def _artifact_room(host: Any) -> dict[str, Any]:
    """The artifact limits and the free disk under the store (one statvfs, no store
    opened), for `paglets doctor`'s "a plan for large results"."""
    limits = getattr(host, "artifact_limits", None)
    if limits is None:
        return {}
    try:
        free: int | None = shutil.disk_usage(host.persistence_dir).free
    except OSError:
        free = None
    return {"max_artifact_bytes": limits[0], "quota_bytes": limits[1], "disk_free_bytes": free}
