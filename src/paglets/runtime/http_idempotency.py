"""`Idempotency-Key` on mutating control routes (network.md §1.6).

A retried create, move or dispose whose first answer was lost must not run twice: the
first answer to (method, path, key) is kept for 10 minutes and given again to a repeat; a
repeat that arrives while the first is still running waits for it. Keys are evicted by
age only. Messages and transfers have their own ids (delivery id, transfer id) and do not
need this.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["IdempotencyCache"]

KEEP_SECONDS = 600.0
MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
MAX_KEY_LENGTH = 128


class _Stored:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(self, response: web.Response) -> None:
        self.status = response.status
        self.body = response.body if isinstance(response.body, bytes) else b""
        self.content_type = response.content_type
        self.headers = {
            k: v for k, v in response.headers.items() if k.lower().startswith("x-paglets")
        }

    def response(self) -> web.Response:
        headers = {**self.headers, "X-Paglets-Idempotent-Replay": "1"}
        return web.Response(
            body=self.body, status=self.status, content_type=self.content_type, headers=headers
        )


class IdempotencyCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], asyncio.Future[_Stored | None] | _Stored] = {}
        self._order: deque[tuple[float, tuple[str, str, str]]] = deque()

    async def run(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        key_header = request.headers.get("Idempotency-Key")
        if request.method not in MUTATING or not key_header or len(key_header) > MAX_KEY_LENGTH:
            return await handler(request)
        key = (request.method, request.path, key_header)
        self._evict()
        entry = self._entries.get(key)
        if isinstance(entry, _Stored):
            return entry.response()
        if entry is not None:  # the first request with this key is still running
            stored = await asyncio.shield(entry)
            return stored.response() if stored is not None else await handler(request)
        running: asyncio.Future[_Stored | None] = asyncio.get_running_loop().create_future()
        self._entries[key] = running
        self._order.append((time.monotonic(), key))
        stored: _Stored | None = None
        try:
            response = await handler(request)
            if isinstance(response, web.Response) and response.status < 500:
                stored = _Stored(response)
            return response
        finally:
            if stored is None:
                self._entries.pop(key, None)  # a failure or a stream: the caller may simply retry
            else:
                self._entries[key] = stored
            if not running.done():
                running.set_result(stored)

    def _evict(self) -> None:
        now = time.monotonic()
        order = self._order
        while order and now - order[0][0] > KEEP_SECONDS:
            key = order.popleft()[1]
            if isinstance(self._entries.get(key), _Stored):
                del self._entries[key]
