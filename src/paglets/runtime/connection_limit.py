"""`--max-connections` (network.md §1.4): past the limit a new connection gets one `503`
with `Retry-After` and is closed, so a flood of clients costs the host a write each, never
a handler, while the connections it already serves go on."""

from __future__ import annotations

import asyncio
import socket
import ssl

from aiohttp import web

__all__ = ["LimitedSockSite"]

_BODY = (
    b'{"error_type":"RemoteHostError","error":"this host serves its maximum number of '
    b'connections; retry shortly","code":"too-many-connections","status":503}'
)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n"
) + _BODY


class _Busy(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY)
        transport.close()


class LimitedSockSite(web.SockSite):
    """A `SockSite` whose listener hands connections past `limit` to `_Busy`."""

    __slots__ = ("_limit",)

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        limit: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=min(limit, 4096))
        self._limit = limit

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        limit = self._limit

        def protocol() -> asyncio.BaseProtocol:
            return _Busy() if len(server.connections) >= limit else server()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )
