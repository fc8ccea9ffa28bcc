"""`PagletsAdminClient`: operate a list of hosts from one place (api.md §15).

The dashboard, the CLI and scripts use it. It is a thin layer over `HostClient`: value
types for what it returns, server lookup by name or URL, and per-server error capture for
the `*_all` calls (one unreachable host never hides the others). Calls that take an
`AgentRecord` follow a paglet that moved, exactly as a proxy does.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from paglets.core.errors import HostError, PagletError
from paglets.core.messages import Message
from paglets.core.runtime_values import ServiceScope
from paglets.remote.client import HostClient
from paglets.remote.mesh import HostRef
from paglets.remote.transfer import TransferTicket
from paglets.runtime.local_hosts import normalise_url

__all__ = ["AgentRecord", "PagletsAdminClient", "ServerRef", "ServerStatus", "ServiceSummary"]

_T = TypeVar("_T")


def _from_wire(cls: type[_T], payload: Any) -> _T:
    """Build a value type from its wire dict: unknown keys ignored, missing ones default."""
    if isinstance(payload, cls):
        return payload
    if not isinstance(payload, dict):
        raise TypeError(f"{cls.__name__}.from_wire needs a dict, got {type(payload).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in payload.items() if k in names})
    except TypeError as exc:
        raise ValueError(f"{cls.__name__}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ServerRef:
    """A host the admin client talks to. `local_start`: the CLI may start it locally."""

    name: str
    url: str
    enabled: bool = True
    local_start: bool = False

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> ServerRef:
        return _from_wire(cls, payload)


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One health check: reachable or not, how fast, and what the host reported."""

    name: str
    url: str
    reachable: bool
    latency_ms: float | None
    active_count: int
    inactive_count: int
    error: str | None = None
    code_version: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> ServerStatus:
        return _from_wire(cls, payload)


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """A paglet as listed by one server."""

    server_name: str
    host_url: str
    agent_id: str
    class_name: str
    state_class_name: str | None
    active: bool

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> AgentRecord:
        return _from_wire(cls, payload)


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """A service advertised on (or known to) one server."""

    server_name: str
    name: str
    host_url: str
    agent_id: str
    capabilities: list[str] = field(default_factory=list)
    scope: str = ServiceScope.LOCAL.value

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> ServiceSummary:
        return _from_wire(cls, payload)


def _proxy_wire(proxy: Any) -> dict[str, str]:
    return {"host_url": proxy.host_url, "agent_id": proxy.agent_id}


class PagletsAdminClient:
    """paglets 2.0's admin client over a list of `ServerRef`s (api.md §15)."""

    def __init__(self, servers: list[ServerRef], *, client: HostClient | None = None) -> None:
        self.servers: list[ServerRef] = list(servers)
        self.client = client if client is not None else HostClient.default()

    # -- servers -----------------------------------------------------------------------

    def enabled_servers(self) -> list[ServerRef]:
        return [s for s in self.servers if s.enabled]

    def set_servers(self, servers: list[ServerRef]) -> None:
        self.servers = list(servers)

    def get_server(self, name_or_url: str) -> ServerRef:
        """The server with that name, else that URL; `HostError` naming the known ones."""
        for server in self.servers:
            if server.name == name_or_url:
                return server
        wanted = normalise_url(name_or_url)
        for server in self.servers:
            if normalise_url(server.url) == wanted:
                return server
        known = ", ".join(f"{s.name} ({s.url})" for s in self.servers) or "none"
        raise HostError(f"no server named or at {name_or_url!r}; known servers: {known}")

    def _server(self, server: ServerRef | str) -> ServerRef:
        return server if isinstance(server, ServerRef) else self.get_server(server)

    def _name_for(self, url: str) -> str:
        wanted = normalise_url(url)
        for server in self.servers:
            if normalise_url(server.url) == wanted:
                return server.name
        return url

    def _each(self, fn: Any) -> list[Any]:
        """`fn(server)` for every enabled server, in parallel, results in server order."""
        servers = self.enabled_servers()
        if len(servers) <= 1:
            return [fn(s) for s in servers]
        with concurrent.futures.ThreadPoolExecutor(min(16, len(servers))) as pool:
            return list(pool.map(fn, servers))

    # -- health ------------------------------------------------------------------------

    def health(self, server: ServerRef | str) -> ServerStatus:
        """Never raises for an unreachable or failing host: `reachable=False` and `error`."""
        ref = self._server(server)
        started = time.perf_counter()
        try:
            health = self.client.health(ref.url)
        except PagletError as exc:
            return ServerStatus(ref.name, ref.url, False, None, 0, 0, error=str(exc))
        latency = (time.perf_counter() - started) * 1000.0
        return ServerStatus(
            ref.name,
            ref.url,
            True,
            round(latency, 3),
            int(health.get("active_count") or 0),
            int(health.get("inactive_count") or 0),
            code_version=health.get("code_version"),
        )

    def health_all(self) -> list[ServerStatus]:
        return self._each(self.health)

    def select_reachable_entry_server(
        self, preferred: ServerRef | str | None = None
    ) -> ServerRef | None:
        """The first enabled server that answers `/health` (`preferred` first). Only the
        configured servers are tried: no subnet scan."""
        candidates = self.enabled_servers()
        if preferred is not None:
            first = self._server(preferred)
            candidates = [first, *(s for s in candidates if s != first)]
        for server in candidates:
            if self.health(server).reachable:
                return server
        return None

    # -- agents ------------------------------------------------------------------------

    def list_agent_payloads(
        self, server: ServerRef | str, *, include_state: bool = False
    ) -> list[dict[str, Any]]:
        """The raw summaries of active and inactive paglets on one server."""
        ref = self._server(server)
        return self.client.list_agents(ref.url, state="all", include_state=include_state)

    def list_agents(self, server: ServerRef | str) -> list[AgentRecord]:
        ref = self._server(server)
        return [self._record(ref, p) for p in self.list_agent_payloads(ref)]

    def list_agents_all(self) -> list[AgentRecord]:
        """Every server's paglets; a server that cannot be reached contributes none."""

        def one(server: ServerRef) -> list[AgentRecord]:
            try:
                return self.list_agents(server)
            except PagletError:
                return []

        return [record for records in self._each(one) for record in records]

    @staticmethod
    def _record(server: ServerRef, payload: dict[str, Any]) -> AgentRecord:
        return AgentRecord(
            server_name=server.name,
            host_url=str(payload.get("address") or server.url),
            agent_id=str(payload["agent_id"]),
            class_name=str(payload.get("class_name") or ""),
            state_class_name=payload.get("state_class_name"),
            active=bool(payload.get("active")),
        )

    def get_agent_info(self, agent: AgentRecord) -> dict[str, Any]:
        return self.client.agent_info(agent.host_url, agent.agent_id)

    def get_agent_state(self, agent: AgentRecord) -> dict[str, Any]:
        return self.client.agent_state(agent.host_url, agent.agent_id)

    def create_agent(
        self,
        server: ServerRef | str,
        agent_class_name: str,
        state_class_name: str | None,
        state: Any = None,
        *,
        init: Any = None,
        agent_id: str | None = None,
    ) -> dict[str, str]:
        ref = self._server(server)
        proxy = self.client.create_agent(
            ref.url, agent_class_name, state_class_name, state, init=init, agent_id=agent_id
        )
        return _proxy_wire(proxy)

    def send(
        self,
        agent: AgentRecord,
        message: Message | dict[str, Any],
        *,
        oneway: bool = False,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
    ) -> Any:
        """Send a `Message` (or its wire dict) and return the reply (`None` if oneway)."""
        if isinstance(message, dict):
            message = Message.from_wire(message)
        return self.client.send_message(
            agent.host_url,
            agent.agent_id,
            message,
            oneway=oneway,
            activate_if_inactive=activate_if_inactive,
            no_delay=no_delay,
        )

    def dispatch(self, agent: AgentRecord, target_url: str | TransferTicket) -> dict[str, str]:
        return _proxy_wire(self.client.dispatch(agent.host_url, agent.agent_id, target_url))

    def clone(
        self, agent: AgentRecord, target_url: str | TransferTicket | None = None
    ) -> dict[str, str]:
        return _proxy_wire(self.client.clone(agent.host_url, agent.agent_id, target_url))

    def retract(self, agent: AgentRecord, target_url: str) -> dict[str, str]:
        return _proxy_wire(self.client.retract(agent.host_url, agent.agent_id, target_url))

    def activate(self, agent: AgentRecord) -> dict[str, str]:
        return _proxy_wire(self.client.activate(agent.host_url, agent.agent_id))

    def deactivate(self, agent: AgentRecord) -> None:
        self.client.deactivate(agent.host_url, agent.agent_id)

    def dispose(self, agent: AgentRecord) -> None:
        self.client.dispose(agent.host_url, agent.agent_id)

    # -- mesh, services, events ----------------------------------------------------------

    def list_hosts(self, server: ServerRef | str) -> list[HostRef]:
        ref = self._server(server)
        return [HostRef.from_wire(h) for h in self.client.list_hosts(ref.url)]

    def list_services(
        self,
        server: ServerRef | str,
        *,
        name: str | None = None,
        capability: str | None = None,
        scope: ServiceScope = ServiceScope.LOCAL,
    ) -> list[ServiceSummary]:
        ref = self._server(server)
        scope_value = scope.value if isinstance(scope, ServiceScope) else str(scope)
        records = self.client.list_services(
            ref.url, name=name, capability=capability, scope=scope_value
        )
        return [self._service(ref, r, scope_value) for r in records]

    @staticmethod
    def _service(server: ServerRef, record: dict[str, Any], scope: str) -> ServiceSummary:
        return ServiceSummary(
            server_name=server.name,
            name=str(record.get("name") or record.get("service_name") or ""),
            host_url=str(record.get("host_url") or server.url),
            agent_id=str(record.get("agent_id") or ""),
            capabilities=list(record.get("capabilities") or []),
            scope=str(record.get("scope") or scope),
        )

    def list_events(
        self, server: ServerRef | str, *, since: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        ref = self._server(server)
        return self.client.events(ref.url, since, limit)
