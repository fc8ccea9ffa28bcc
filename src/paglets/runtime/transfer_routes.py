"""HTTP routes of the move protocol (`/transfers/...`, `/agents/{id}/location`).

Filled in with the transfers module; the HTTP app mounts whatever `transfer_routes` returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from paglets.runtime.host import Host


def transfer_routes(host: Host) -> list[web.RouteDef]:
    return []
