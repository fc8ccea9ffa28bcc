"""The jobs tabs of the dashboard (architecture.md §11, docs/dashboard.md): what this host
knows about compute jobs, read locally (paglets.system.compute_slots.overview).

* `GET /jobs?limit&offset&state` → `{jobs, total, offset, limit}`: compute jobs and
  collectors on this host (`job_index`), oldest transition first.
* `GET /jobs/queue` → `{queue, leases}`: this host's scheduler queue in grant order and
  its leases (granted or running jobs).
* `GET /jobs/groups` → `{groups: [{group_id, status, expected, done, failed, cancelled,
  running, waiting, collector_host, ...}]}`: the groups whose collector lives here.

The reads run on the host's worker pool (they touch SQLite and may wake a collector),
never on the event loop. Mesh-wide views are `paglets jobs ...` (it fans out).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from paglets.runtime.http_wire import refuse, reply

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["jobs_routes"]

PAGE_LIMIT = 500


def _int(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        refuse(
            f"?{name}={raw!r} must be an integer >= 0",
            code="bad-query",
            error_type="SerializationError",
        )
    return value


def _overview() -> Any:
    """The jobs system's read side, imported at the first request (not at host start)."""
    from paglets.system.compute_slots import overview

    return overview


def jobs_routes(host: Host) -> list[web.RouteDef]:
    async def jobs(request: web.Request) -> web.Response:
        q = request.query
        limit = min(_int(q, "limit", 50), PAGE_LIMIT)
        offset = _int(q, "offset", 0)
        states = tuple(s for s in (q.get("state") or "").split(",") if s)
        body = await host.http.run_blocking(
            lambda: _overview().job_rows(host, limit=limit, offset=offset, states=states)
        )
        return reply(request, body)

    async def queue(request: web.Request) -> web.Response:
        return reply(
            request, await host.http.run_blocking(lambda: _overview().queue_and_leases(host))
        )

    async def groups(request: web.Request) -> web.Response:
        return reply(request, await host.http.run_blocking(lambda: _overview().local_groups(host)))

    return [
        web.get("/jobs", jobs),
        web.get("/jobs/queue", queue),
        web.get("/jobs/groups", groups),
    ]
