"""`GET /events` (pages of the durable event log) and its live form, `GET /events/stream`
(Server-Sent Events; network.md §1.7 to §1.9).

SSE ids are event ids, so `Last-Event-ID` resumes a stream, across a host restart too. The
stream always reads from the event log itself (never from a private copy), so a subscriber
sees exactly the durable order; an event listener only wakes the waiting streams. It is
registered while at least one stream is open, so a host nobody watches pays nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from paglets.core.context_events import ContextEvent
from paglets.runtime.http_wire import refuse, reply
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.http_api import HttpServer

__all__ = ["EventFeed", "routes"]

log = logging.getLogger("paglets.http")

QUERY_INT_MAX = 2**62
PAGE_DEFAULT = 100
PAGE_MAX = 1000
STREAM_BATCH = 500
MAX_SUBSCRIBERS = 64
DISCONNECT_CHECK = 1.0  # seconds between checks that an idle subscriber is still there
JOB_SCAN_PAGES = 20  # pages scanned per request when filtering by job (data["job"])

_json = msgspec.json.Encoder()


class EventFeed:
    """Wakes SSE streams when the host emits events (coalesced: one loop wake-up per burst).

    `ping_interval` is the keep-alive comment period (15 s; tests shorten it).
    """

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.ping_interval = 15.0
        self.subscribers = 0
        self.changed = asyncio.Event()
        self.closed = False
        self._wake_pending = False
        self._listening = False

    def _on_event(self, _event: ContextEvent) -> None:
        # On the event log's listener thread. One call_soon_threadsafe per burst, not per event.
        if self._wake_pending:
            return
        loop = self.server._loop
        if loop is None:
            return
        self._wake_pending = True
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._wake_pending = False
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def subscribe(self) -> None:
        if self.closed:
            refuse(
                "the host is stopping; no new event streams",
                code="draining",
                error_type="RemoteHostError",
                headers={"Retry-After": "1"},
            )
        if self.subscribers >= MAX_SUBSCRIBERS:
            refuse(
                f"this host already serves {MAX_SUBSCRIBERS} event streams; poll GET /events "
                "instead or retry later",
                code="too-many-subscribers",
                error_type="RemoteHostError",
                headers={"Retry-After": "5"},
            )
        self.subscribers += 1
        if not self._listening:
            self._listening = True
            self.server.host.add_listener(self._on_event)

    def unsubscribe(self) -> None:
        self.subscribers -= 1
        if self.subscribers <= 0 and self._listening:
            self._listening = False
            self.server.host.remove_listener(self._on_event)

    def close(self) -> None:
        """Server stop: end every stream now."""
        self.closed = True
        self._wake()


def _filters(request: web.Request) -> tuple[list[str] | None, str | None, str | None]:
    kinds = [k for raw in request.query.getall("kind", []) for k in raw.split(",") if k]
    agent_id = request.query.get("agent_id") or None
    job = request.query.get("job") or None
    return kinds or None, agent_id, job


def _int(request: web.Request, name: str, raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= QUERY_INT_MAX:
        refuse(
            f"{name}={raw!r} must be an integer from 0 to {QUERY_INT_MAX}",
            code="bad-query",
            error_type="SerializationError",
        )
    return value


def _read(
    server: HttpServer,
    since: int,
    limit: int,
    kinds: list[str] | None,
    agent_id: str | None,
    job: str | None,
) -> tuple[list[ContextEvent], int]:
    """Up to `limit` events after `since`; returns them and the last id scanned."""
    log = server.host.events
    if job is None:
        events = log.list_events(since, limit, kinds=kinds, agent_id=agent_id)
        return events, (events[-1].event_id if events else since)
    out: list[ContextEvent] = []
    scanned = since
    for _ in range(JOB_SCAN_PAGES):
        page = log.list_events(scanned, PAGE_MAX, kinds=kinds, agent_id=agent_id)
        if not page:
            break
        for event in page:
            scanned = event.event_id
            if event.data.get("job") == job:
                out.append(event)
                if len(out) >= limit:
                    return out, scanned
    return out, scanned


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _sse_frame(event: ContextEvent) -> bytes:
    data = _json.encode(codec.json_safe(event.to_wire()))
    kind = event.kind.replace("\n", " ").replace("\r", " ")
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.event_id, kind.encode(), data)


class EventRoutes:
    def __init__(self, server: HttpServer) -> None:
        self.server = server

    async def events(self, request: web.Request) -> web.StreamResponse:
        if "text/event-stream" in request.headers.get("Accept", ""):
            return await self.stream(request)
        kinds, agent_id, job = _filters(request)
        since = _int(request, "since", request.query.get("since"), 0)
        limit = _int(request, "limit", request.query.get("limit"), PAGE_DEFAULT)
        if not 1 <= limit <= PAGE_MAX:
            refuse(
                f"limit={limit} must be from 1 to {PAGE_MAX}",
                code="bad-query",
                error_type="SerializationError",
            )
        events, last = await self.server.run_blocking(
            _read, self.server, since, limit, kinds, agent_id, job
        )
        return reply(request, {"events": [e.to_wire() for e in events], "last_event_id": last})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        feed = server.events
        kinds, agent_id, job = _filters(request)
        resume = request.headers.get("Last-Event-ID")
        if resume is not None:
            since = _int(request, "Last-Event-ID", resume.strip(), 0)
        elif request.query.get("since") not in (None, ""):
            since = _int(request, "since", request.query.get("since"), 0)
        else:
            since = server.host.events.last_event_id  # live events only
        feed.subscribe()
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            try:
                await response.write(b": stream open\n\n")
                await self._pump(request, response, since, kinds, agent_id, job)
            except ConnectionError:
                pass  # the subscriber went away
            except Exception:
                # The answer has begun: an error body cannot follow, so end the stream (the
                # client resumes with Last-Event-ID).
                if not feed.closed:
                    log.exception("event stream to %s failed", request.remote)
            return response
        finally:
            feed.unsubscribe()

    async def _pump(
        self,
        request: web.Request,
        response: web.StreamResponse,
        since: int,
        kinds: list[str] | None,
        agent_id: str | None,
        job: str | None,
    ) -> None:
        server = self.server
        feed = server.events
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + feed.ping_interval
        while not feed.closed:
            changed = feed.changed  # taken before reading: no wake-up can be missed
            events, since = await server.run_blocking(
                _read, server, since, STREAM_BATCH, kinds, agent_id, job
            )
            if events:
                await response.write(b"".join(_sse_frame(e) for e in events))
                if len(events) >= STREAM_BATCH:
                    continue
            if _gone(request):
                return
            wait = min(next_ping - loop.time(), DISCONNECT_CHECK)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait)
            if loop.time() >= next_ping and not feed.closed:
                await response.write(b": ping\n\n")
                next_ping = loop.time() + feed.ping_interval


def routes(server: HttpServer) -> list[tuple[str, str, Any]]:
    r = EventRoutes(server)
    return [("GET", "/events", r.events), ("GET", "/events/stream", r.stream)]
