"""The host's HTTP API (aiohttp). Placeholder until the network layer lands: it serves
`/health` only, so the reserved socket answers."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from paglets.runtime.host import Host


class HttpServer:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._runner: web.AppRunner | None = None

    async def start(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(self.host.health())
