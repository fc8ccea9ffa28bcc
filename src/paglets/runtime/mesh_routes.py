"""The mesh's HTTP routes: `POST /mesh/frame` (every SWIM frame kind, MessagePack) and
`GET /mesh/members` (this host's view, network.md §3.2). Both run on the host's loop, where
the membership node lives, so the node is used directly; the middleware has authenticated
the caller already."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from paglets.remote.membership import Member, StoredSummary, describe
from paglets.remote.mesh_wire import ALIVE, decode_frame
from paglets.runtime.http_wire import read_body, refuse, reply
from paglets.runtime.mesh_transport import FRAME_PATH

if TYPE_CHECKING:
    from paglets.remote.swim import SwimNode
    from paglets.runtime.host import Host

__all__ = ["mesh_routes"]

MAX_FRAME_BYTES = 4 * 1024 * 1024  # a full sync reply of a large mesh stays well below


def mesh_routes(host: Host) -> list[web.RouteDef]:
    def node_of() -> SwimNode:
        node = host.mesh
        if node is None:
            refuse(
                f"host {host.name!r} runs without mesh membership (started with --no-mesh)",
                code="mesh-disabled",
                status=404,
            )
        return node

    async def frame(request: web.Request) -> web.Response:
        node = node_of()
        data = await read_body(request, MAX_FRAME_BYTES, code="body-too-large", what="frame")
        try:
            decoded = decode_frame(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            refuse(f"POST {FRAME_PATH}: not a mesh frame: {exc}", code="invalid-frame")
        node.on_frame(decoded)
        return web.Response(status=204)

    async def members(request: web.Request) -> web.Response:
        node = node_of()
        now = node.clock.time()
        me = Member(node.record, ALIVE, node.record.incarnation, now)
        for kind, summary in node.book.own.items():  # its own spec and load, fresh
            me.summaries[kind] = StoredSummary(summary.version, summary.body, 0, now)
        own = describe(me, now)
        own["self"] = True
        listed = [own]
        for member in node.members():
            entry = describe(member, now)
            entry["self"] = False
            listed.append(entry)
        return reply(request, {"members": listed})

    return [web.post(FRAME_PATH, frame), web.get("/mesh/members", members)]
