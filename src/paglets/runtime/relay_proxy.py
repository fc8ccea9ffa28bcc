"""`/relay/hosts/{name}/...` on a hub: an HTTP request turned into a `req` frame to the node
and its `res` back (network.md §3.8).

The hub never redelivers by itself. At the deadline (the request's `X-Paglets-Deadline-Ms`,
else `--relay-delivery-timeout`) it answers `504 relay-timeout` with `outcome: unknown` and
sends `cancel`: a request the node has not started never runs, one already running finishes
and its answer is kept under its delivery id, so a retry with the same id gets that answer
and cannot run twice. A dropped socket is `502 relay-disconnected`; more than
`--relay-queue-limit` deliveries in flight to one node is `429 relay-queue-full`.

Bodies up to a chunk travel inside the frames; larger ones stream under credit in both
directions, so the hub holds at most a window per delivery. The peer WebSocket (`/peer/ws`)
is not relayed: its upgrade is refused with `404`, and clients fall back to HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from paglets.remote.relay_frames import CHUNK_BYTES, Req
from paglets.runtime.http_wire import HttpRefusal, refuse
from paglets.runtime.relay_http import delivery_id_for, request_headers
from paglets.runtime.relay_link import BODY_IDLE_SECONDS, Call, LinkLost, RelayLink

if TYPE_CHECKING:
    from paglets.runtime.relay_hub import NodeEntry, RelayHub

__all__ = ["proxy_handler"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _deadline(request: web.Request, default: float) -> float:
    raw = request.headers.get("X-Paglets-Deadline-Ms")
    if raw is not None and raw.isdigit() and int(raw) > 0:
        return int(raw) / 1000
    return default


async def _body_stream(request: web.Request) -> AsyncIterator[bytes]:
    content = request.content
    while True:
        data = await asyncio.wait_for(content.read(CHUNK_BYTES), BODY_IDLE_SECONDS)
        if not data:
            return
        yield data


def _lost(entry: NodeEntry, name: str, hub: str, reason: str) -> HttpRefusal:
    entry.last_error = reason
    return HttpRefusal(
        f"relay node {name!r} disconnected from hub {hub!r} before answering ({reason}); "
        "the outcome is unknown: retry with the same Idempotency-Key",
        code="relay-disconnected",
        error_type="RemoteHostError",
        headers={"Retry-After": "1"},
        detail={"outcome": "unknown"},
    )


def proxy_handler(hub: RelayHub) -> Handler:
    async def proxy(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        entry = hub.entry_for(name)
        link = entry.link
        assert link is not None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            refuse(
                f"{request.path}: WebSocket upgrades are not relayed; use plain HTTP",
                code="no-route",
                status=404,
            )
        limit = hub.settings.queue_limit
        if link.in_flight >= limit:
            refuse(
                f"relay node {name!r} already has {limit} deliveries in flight on hub "
                f"{hub.host.name!r} (--relay-queue-limit); retry later",
                code="relay-queue-full",
                headers={"Retry-After": "1"},
            )
        timeout = _deadline(request, hub.settings.delivery_timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        path = "/" + request.match_info.get("tail", "")
        length = request.content_length
        body: bytes | AsyncIterator[bytes] | None = None
        inline: bytes | None = None
        if request.body_exists:
            if length is not None and length <= CHUNK_BYTES:
                inline = body = await asyncio.wait_for(request.read(), max(0.001, timeout))
            else:
                body = _body_stream(request)
        delivery_id, keyed = delivery_id_for(request.method, path, request.headers, inline)
        req = Req(
            sid=0,
            delivery_id=delivery_id,
            method=request.method,
            path=path,
            query=request.query_string,
            headers=request_headers(request.headers.items()),
            deadline_ms=max(1, int(timeout * 1000)),
            keyed=keyed,
        )
        try:
            call = await link.call(req, body)
        except LinkLost as exc:
            raise _lost(entry, name, hub.host.name, str(exc)) from None
        try:
            head = await asyncio.wait_for(
                asyncio.shield(call.head), max(0.001, deadline - loop.time())
            )
        except TimeoutError:
            entry.timeouts += 1
            await link.abandon(call)  # the cancel goes out before the 504
            hub.host.events.emit(
                "relay-timeout",
                data={"name": name, "delivery_id": delivery_id, "path": path},
                error=f"relay node {name!r}: no answer to {request.method} {path} in {timeout:g}s",
            )
            raise HttpRefusal(
                f"relay node {name!r} did not answer {request.method} {path} within "
                f"{timeout:g}s (hub {hub.host.name!r}); the outcome is unknown: a retry with "
                "the same Idempotency-Key (or message id) gets the first run's answer and "
                "never runs it twice",
                code="relay-timeout",
                error_type="PagletTimeoutError",
                status=504,
                detail={"outcome": "unknown", "delivery_id": delivery_id, "node": name},
            ) from None
        except LinkLost as exc:
            raise _lost(entry, name, hub.host.name, str(exc)) from None
        except asyncio.CancelledError:
            link.cancel(call)  # the caller went away
            raise
        entry.delivered += 1
        headers = CIMultiDict(head.headers)
        if not head.chunked:
            return web.Response(status=head.status, headers=headers, body=head.body)
        return await _stream_answer(request, link, call, head.status, headers)

    return proxy


async def _stream_answer(
    request: web.Request, link: RelayLink, call: Call, status: int, headers: CIMultiDict[str]
) -> web.StreamResponse:
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    assert call.body is not None
    try:
        async for data in call.body.chunks():
            await response.write(data)
    except (LinkLost, ConnectionError) as exc:
        # Headers are out: the only honest signal left is a cut connection (no final chunk).
        link.cancel(call)
        transport = request.transport
        if transport is not None:
            transport.abort()
        if not isinstance(exc, LinkLost):
            raise
        return response
    except asyncio.CancelledError:
        link.cancel(call)
        raise
    finally:
        link.finish(call)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
