"""HTTP routes of the artifact store (`/artifacts...`). Filled in with the artifact store;
the HTTP app mounts whatever `artifact_routes` returns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from paglets.runtime.host import Host


def artifact_routes(host: Host) -> list[web.RouteDef]:
    return []
