"""HTTP routes of the move protocol (network.md §1.8, §2.2) and of agent locations.

Errors are answered by the HTTP app's guard; bodies are read with its limits (the
state limit for PREPARE, the control limit for the rest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from paglets.runtime.http_wire import read_body, refuse, reply

if TYPE_CHECKING:
    from paglets.runtime.host import Host


class LocationBody(msgspec.Struct):
    """A paglet's new place, sent to its home host after each move."""

    url: str
    epoch: int
    host_name: str = ""
    host_id: str = ""
    agent_id: str = ""


def transfer_routes(host: Host) -> list[web.RouteDef]:
    transfers = host.transfers

    async def call(request: web.Request, fn: Any, *args: Any) -> web.Response:
        return reply(request, await host.http.run_blocking(fn, *args))

    async def prepare(request: web.Request) -> web.Response:
        data = await read_body(
            request, host.http.state_limit, code="state-too-large", what="envelope"
        )
        answer = await host.http.run_blocking(transfers.prepare, request.match_info["tid"], data)
        # A draining target's REJECTED carries when to come back (network.md §2.2).
        retry = ((answer.get("error") or {}).get("detail") or {}).get("retry_after_s")
        return reply(request, answer, headers={"Retry-After": str(retry)} if retry else None)

    async def commit(request: web.Request) -> web.Response:
        data = await read_body(request, host.http.control_limit)
        return await call(request, transfers.commit, request.match_info["tid"], data)

    async def abort(request: web.Request) -> web.Response:
        await read_body(request, host.http.control_limit)
        return await call(request, transfers.abort, request.match_info["tid"])

    async def status(request: web.Request) -> web.Response:
        return await call(request, transfers.status, request.match_info["tid"])

    async def listing(request: web.Request) -> web.Response:
        q = request.query

        def run() -> dict[str, Any]:
            return {
                "transfers": transfers.listing(
                    role=q.get("role"), status=q.get("status"), agent_id=q.get("agent_id")
                )
            }

        return await call(request, run)

    async def location(request: web.Request) -> web.Response:
        return await call(request, transfers.location, request.match_info["agent_id"])

    async def note_location(request: web.Request) -> web.Response:
        data = await read_body(request, host.http.control_limit)
        try:
            decode = (
                msgspec.msgpack.decode
                if "msgpack" in (request.content_type or "")
                else msgspec.json.decode
            )
            body = decode(data, type=LocationBody)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            refuse(
                f"a location needs url and epoch: {exc}",
                code="invalid-body",
                error_type="SerializationError",
            )
        return await call(
            request,
            transfers.note_location,
            request.match_info["agent_id"],
            msgspec.structs.asdict(body),
        )

    return [
        web.post("/transfers/{tid}/prepare", prepare),
        web.post("/transfers/{tid}/commit", commit),
        web.post("/transfers/{tid}/abort", abort),
        web.get("/transfers/{tid}", status),
        web.get("/transfers", listing),
        web.get("/agents/{agent_id}/location", location),
        web.post("/agents/{agent_id}/location", note_location),
    ]
