"""`GET /metrics` (architecture.md §11). The route is light: prometheus-client and the
collectors (`paglets.runtime.metrics`) load at the first scrape, not at host start
(targets g1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from paglets.runtime.http_wire import SERVER_KEY

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["metrics_routes"]


def metrics_routes(host: Host) -> list[web.RouteDef]:
    """`GET /metrics`, unless the host runs with `--no-metrics` (then the route is absent:
    `404 no-route`). Authenticated like every other route."""
    if not getattr(host, "metrics_enabled", True):
        return []

    def scrape() -> tuple[bytes, str]:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        from paglets.runtime.metrics import registry_for

        return generate_latest(registry_for(host)), CONTENT_TYPE_LATEST

    async def metrics(request: web.Request) -> web.Response:
        server: Any = request.app[SERVER_KEY]
        body, content_type = await server.run_blocking(scrape)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    return [web.get("/metrics", metrics)]
