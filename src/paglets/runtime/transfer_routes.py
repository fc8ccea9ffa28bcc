"""HTTP routes of the move protocol (network.md §1.8, §2.2) and of agent locations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from paglets.core.errors import PagletError, error_to_wire, http_status_for

if TYPE_CHECKING:
    from paglets.runtime.host import Host

MSGPACK = "application/msgpack"


def transfer_routes(host: Host) -> list[web.RouteDef]:
    transfers = host.transfers

    async def blocking(fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def run() -> None:
            try:
                result = fn()
            except BaseException as exc:
                loop.call_soon_threadsafe(_set_exception, future, exc)
            else:
                loop.call_soon_threadsafe(_set_result, future, result)

        host.pool.submit(run)
        return await future

    def answer(request: web.Request, payload: Any, status: int = 200) -> web.Response:
        if MSGPACK in request.headers.get("Accept", ""):
            return web.Response(
                body=msgspec.msgpack.encode(payload), status=status, content_type=MSGPACK
            )
        return web.json_response(
            payload, status=status, dumps=lambda v: msgspec.json.encode(v).decode()
        )

    def route(
        fn: Callable[[web.Request], Awaitable[Any]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            try:
                return answer(request, await fn(request))
            except PagletError as exc:
                wire = error_to_wire(exc, host_name=host.name, with_traceback=False)
                status = http_status_for(exc)
                if wire.get("code") in ("unknown-transfer",):
                    status = 404
                wire["status"] = status
                return answer(request, wire, status)

        return handler

    async def body_of(request: web.Request) -> Any:
        data = await request.read()
        if not data:
            return {}
        if "json" in request.headers.get("Content-Type", ""):
            return msgspec.json.decode(data)
        return msgspec.msgpack.decode(data)

    async def prepare(request: web.Request) -> Any:
        data = await request.read()
        return await blocking(lambda: transfers.prepare(request.match_info["tid"], data))

    async def commit(request: web.Request) -> Any:
        data = await request.read()
        return await blocking(lambda: transfers.commit(request.match_info["tid"], data))

    async def abort(request: web.Request) -> Any:
        await request.read()
        return await blocking(lambda: transfers.abort(request.match_info["tid"]))

    async def status(request: web.Request) -> Any:
        return await blocking(lambda: transfers.status(request.match_info["tid"]))

    async def listing(request: web.Request) -> Any:
        q = request.query
        return {
            "transfers": await blocking(
                lambda: transfers.listing(
                    role=q.get("role"), status=q.get("status"), agent_id=q.get("agent_id")
                )
            )
        }

    async def location(request: web.Request) -> Any:
        return await blocking(lambda: transfers.location(request.match_info["agent_id"]))

    async def note_location(request: web.Request) -> Any:
        body = await body_of(request)
        return await blocking(lambda: transfers.note_location(request.match_info["agent_id"], body))

    return [
        web.post("/transfers/{tid}/prepare", route(prepare)),
        web.post("/transfers/{tid}/commit", route(commit)),
        web.post("/transfers/{tid}/abort", route(abort)),
        web.get("/transfers/{tid}", route(status)),
        web.get("/transfers", route(listing)),
        web.get("/agents/{agent_id}/location", route(location)),
        web.post("/agents/{agent_id}/location", route(note_location)),
    ]


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
