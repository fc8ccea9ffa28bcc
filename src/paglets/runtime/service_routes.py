"""The service routes of the HTTP API (network.md §1.7, api.md §16).

Kept from paglets 2.0 (bodies and answers as 2.0):

* `POST /agents/{id}/services` `{name, capabilities, metadata, scope, ttl}` → `{service}`
* `POST /agents/{id}/unadvertise-service` `{name}` → `{services}`
* `GET /services?name&capability&scope` → `{services}`; mesh scope is answered from the
  gossiped digests, stale ones confirmed with their owners in parallel (this same route,
  `scope=local`, is how owners are asked)
* `POST /services/leases` `{agent_id, service_name, ttl=60}` → `{lease_id, expires_at}`
* `POST /services/leases/{lease_id}/release` → `{released}`

New: `POST /services/leases/{lease_id}/renew` `{ttl}` → `{lease_id, expires_at}`;
`POST /services/resident/ensure` `{agent_id}` → `{proxy}` (start a resident provider, what a
`ServiceHandle` asks when its provider is missing or crashed); `GET /services/resident` →
`{services}` (the resident services of this host and their state).

Everything runs on the worker pool: a lookup may wait for owners, an ensure for a create.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from msgspec import Struct

from paglets.core.ids import validate_agent_id
from paglets.core.runtime_values import ServiceScope, enum_from_wire
from paglets.runtime.http_wire import decode_body, read_body, refuse, reply, restore

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["service_routes"]

BODY_LIMIT = 1024 * 1024


class AdvertiseBody(Struct):
    name: str
    capabilities: list[str] = []
    metadata: dict[str, Any] = {}
    scope: str = "local"
    ttl: float | None = None


class NameBody(Struct):
    name: str


class LeaseBody(Struct):
    agent_id: str | None = None
    service_name: str | None = None
    ttl: float = 60.0


class RenewBody(Struct):
    ttl: float | None = None


class EnsureBody(Struct):
    agent_id: str


def _scope(raw: str | None) -> ServiceScope:
    try:
        return enum_from_wire(ServiceScope, raw or "local", "scope")
    except ValueError as exc:
        refuse(str(exc), code="bad-query", error_type="SerializationError")


def service_routes(host: Host) -> list[web.RouteDef]:
    def blocking(fn: Any, *args: Any) -> Any:
        return host.http.run_blocking(fn, *args)

    async def body(request: web.Request, struct: type) -> Any:
        return decode_body(request, await read_body(request, BODY_LIMIT), struct)

    async def advertise(request: web.Request) -> web.Response:
        agent_id = validate_agent_id(request.match_info["id"])
        data: AdvertiseBody = await body(request, AdvertiseBody)
        scope = _scope(data.scope)

        def job() -> Any:
            return host.advertise_service(
                agent_id,
                data.name,
                capabilities=data.capabilities,
                metadata=restore(data.metadata, request),
                scope=scope,
                ttl=data.ttl,
            )

        record = await blocking(job)
        return reply(request, {"service": record.to_wire()})

    async def unadvertise(request: web.Request) -> web.Response:
        agent_id = validate_agent_id(request.match_info["id"])
        data: NameBody = await body(request, NameBody)
        removed = await blocking(lambda: host.unadvertise_service(data.name, agent_id=agent_id))
        return reply(request, {"services": [r.to_wire() for r in removed]})

    async def lookup(request: web.Request) -> web.Response:
        query = request.query
        scope = _scope(query.get("scope"))
        name = query.get("name") or None
        capability = query.get("capability") or None
        found = await blocking(
            lambda: host.lookup_services(name, capability=capability, scope=scope)
        )
        return reply(request, {"services": [r.to_wire() for r in found]})

    async def lease(request: web.Request) -> web.Response:
        data: LeaseBody = await body(request, LeaseBody)
        resident = host.services.resident
        answer = await blocking(
            lambda: resident.lease(
                agent_id=data.agent_id, service_name=data.service_name, ttl=data.ttl
            )
        )
        return reply(request, answer)

    async def renew(request: web.Request) -> web.Response:
        data: RenewBody = await body(request, RenewBody)
        lease_id = request.match_info["lease_id"]
        return reply(request, host.services.resident.renew(lease_id, data.ttl))

    async def release(request: web.Request) -> web.Response:
        return reply(request, host.services.resident.release(request.match_info["lease_id"]))

    async def ensure(request: web.Request) -> web.Response:
        data: EnsureBody = await body(request, EnsureBody)
        agent_id = validate_agent_id(data.agent_id)
        return reply(request, await blocking(host.services.resident.ensure, agent_id))

    async def resident(request: web.Request) -> web.Response:
        return reply(request, {"services": host.services.resident.status()})

    return [
        web.post("/agents/{id}/services", advertise),
        web.post("/agents/{id}/unadvertise-service", unadvertise),
        web.get("/services", lookup),
        web.post("/services/leases", lease),
        web.post("/services/leases/{lease_id}/renew", renew),
        web.post("/services/leases/{lease_id}/release", release),
        web.post("/services/resident/ensure", ensure),
        web.get("/services/resident", resident),
    ]
