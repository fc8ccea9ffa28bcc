"""A relay node's outbound calls: direct first, through the hub when the direct call cannot
reach its host at all (network.md §3.8, `req` node → hub).

`RelayFallbackPool` wraps the connection pool of the node's `HostClient`, the one place
every HTTP exchange of the client goes through. Only failures that prove the request was
never delivered (refused, unreachable, unknown name) are retried through the hub; a
connection lost after the request was written, or a timeout, is reported as it is (the
outcome is unknown there, and a second route could run it twice).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from paglets.core.errors import PagletTimeoutError, RemoteHostError
from paglets.remote.http_pool import Headers
from paglets.remote.relay_frames import Req
from paglets.runtime.relay_http import request_headers
from paglets.runtime.relay_link import LinkLost

if TYPE_CHECKING:
    from paglets.runtime.relay_node import RelayNode

__all__ = ["NEVER_SENT", "RelayFallbackPool", "never_sent"]

# Reasons `http_pool` gives for a connection that was never made.
NEVER_SENT = (
    "connection refused",
    "unknown host name",
    "network is unreachable",
    "no route to host",
    "host is unreachable",
)


def never_sent(exc: BaseException) -> bool:
    """Whether `exc` proves the request did not reach its host (so another route is safe)."""
    if isinstance(exc, PagletTimeoutError) or not isinstance(exc, RemoteHostError):
        return False
    text = str(exc).lower()
    return any(reason in text for reason in NEVER_SENT)


class RelayFallbackPool:
    """Quacks like `http_pool.ConnectionPool`; see the module docstring."""

    def __init__(self, pool: Any, node: RelayNode) -> None:
        self._pool = pool
        self._node = node

    def exchange(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
    ) -> tuple[int, Headers, bytes]:
        try:
            return self._pool.exchange(method, url, body, headers, timeout)
        except RemoteHostError as exc:
            node = self._node
            if not never_sent(exc) or node.is_hub(url) or node.link is None:
                raise
            loop = node.host._loop
            if loop is None or threading.current_thread() is node.host._loop_thread:
                raise  # never block the loop that serves the link
            future = asyncio.run_coroutine_threadsafe(
                forward(node, method, url, body, headers, timeout), loop
            )
            try:
                return future.result(timeout + 1.0)
            except TimeoutError:
                future.cancel()
                raise PagletTimeoutError(
                    f"{method} {url}: no answer through hub {node.hub_url} within {timeout:g}s"
                ) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def forward(
    node: RelayNode,
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    timeout: float,
) -> tuple[int, Headers, bytes]:
    """One HTTP exchange made by the hub on this node's behalf."""
    link = node.link
    if link is None or link.closed:
        raise RemoteHostError(f"could not reach {url}, and the hub {node.hub_url} is not connected")
    parts = urlsplit(url)
    key = headers.get("Idempotency-Key") or uuid.uuid4().hex
    req = Req(
        sid=0,
        delivery_id=key,
        method=method,
        path=parts.path or "/",
        query=parts.query,
        headers=request_headers(headers.items()),
        deadline_ms=max(1, int(timeout * 1000)),
        keyed="Idempotency-Key" in headers,
        target=f"{parts.scheme}://{parts.netloc}",
    )
    try:
        call = await link.call(req, body)
        try:
            head = await asyncio.wait_for(asyncio.shield(call.head), timeout)
        except TimeoutError:
            link.cancel(call)
            raise PagletTimeoutError(
                f"{method} {url}: no answer through hub {node.hub_url} within {timeout:g}s"
            ) from None
        data = head.body or b""
        if head.chunked and call.body is not None:
            data = b"".join([piece async for piece in call.body.chunks()])
            link.finish(call)
    except LinkLost as exc:
        raise RemoteHostError(f"{method} {url} through hub {node.hub_url}: {exc}") from None
    answer = Headers((k.lower(), v) for k, v in head.headers)
    return head.status, answer, data
