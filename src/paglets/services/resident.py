"""Resident services (api.md §16.3): providers the host manages on behalf of a contract.

A paglet class declares `RESIDENT_SERVICES = (ResidentServiceSpec(CONTRACT, ...),)`; the
launch config (or the built-in list, or `Host.services.enable_resident`) enables an entry.
From then on the host:

* advertises the contract at start, under the provider's fixed id (`service.<contract>` by
  default), whether or not the provider exists yet;
* creates or activates the provider on the first call or lease (`ensure`), exactly once
  however many callers race: a per-service lock, and the runtime's own activation dedup;
* `LAZY`: deactivates it after `idle_timeout` seconds with no message handled, none queued
  or running, and no lease held (reason `"resident-service-idle"`); the next call wakes it;
* `EAGER`: starts it at host start, and again whenever the service tick finds it gone
  (backing off 1 s → 60 s while it keeps failing);
* a crashed provider (a dead `ISOLATION="process"` child) is restarted by the next call.

Leases are held in memory on the provider's host; expired ones are dropped by the tick.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paglets.core.errors import (
    DuplicateAgentError,
    HostError,
    InvalidAgentError,
    ServiceNotFoundError,
)
from paglets.core.ids import validate_agent_id
from paglets.core.runtime_values import ResidentLifecycle, ServiceScope, coerce_enum
from paglets.services.contracts import RESIDENT_METADATA_KEY, ServiceContract

if TYPE_CHECKING:
    from paglets.runtime.host import Host
    from paglets.services.registry import ServiceRegistry

__all__ = ["ResidentLifecycle", "ResidentManager", "ResidentServiceSpec"]

log = logging.getLogger("paglets.services")

IDLE_REASON = "resident-service-idle"
MANAGER_SOURCE = "resident-service-manager"
RETRY_MIN, RETRY_MAX = 1.0, 60.0


@dataclass(frozen=True)
class ResidentServiceSpec:
    """How one contract of a class is run as a resident service (api.md §16.3).

    `scope` and `lifecycle` accept members or their values (`"mesh"`, `"eager"`), as class
    attributes do. `state` is the provider's initial state (a dict or a state instance).
    `singleton=True` (the only mode the manager runs): one provider per host, under
    `agent_id` (default `"service.<contract name>"`).
    """

    contract: ServiceContract
    scope: ServiceScope = ServiceScope.LOCAL
    lifecycle: ResidentLifecycle = ResidentLifecycle.LAZY
    agent_id: str | None = None
    singleton: bool = True
    idle_timeout: float = 30.0
    state: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.contract, ServiceContract):
            raise TypeError(f"ResidentServiceSpec needs a ServiceContract, got {self.contract!r}")
        set_ = object.__setattr__
        set_(self, "scope", coerce_enum(self.scope, ServiceScope, "ResidentServiceSpec.scope"))
        set_(
            self,
            "lifecycle",
            coerce_enum(self.lifecycle, ResidentLifecycle, "ResidentServiceSpec.lifecycle"),
        )
        if self.agent_id is not None:
            validate_agent_id(self.agent_id)
        timeout = self.idle_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(
                f"ResidentServiceSpec.idle_timeout must be a positive number of seconds, "
                f"got {timeout!r}"
            )
        set_(self, "idle_timeout", float(timeout))
        if not isinstance(self.singleton, bool):
            raise TypeError(f"ResidentServiceSpec.singleton must be a bool, got {self.singleton!r}")

    def __hash__(self) -> int:
        return hash((self.contract, self.agent_id))

    @property
    def resolved_agent_id(self) -> str:
        return self.agent_id or f"service.{self.contract.name}"


class _Resident:
    """One enabled resident service on this host."""

    __slots__ = (
        "agent_id",
        "class_name",
        "cls",
        "failures",
        "init",
        "lock",
        "retry_at",
        "spec",
        "state",
    )

    def __init__(self, cls: type, class_name: str, spec: ResidentServiceSpec, init: Any) -> None:
        self.cls = cls
        self.class_name = class_name
        self.spec = spec
        self.agent_id = spec.resolved_agent_id
        self.state = spec.state
        self.init = init
        self.lock = threading.Lock()
        self.failures = 0
        self.retry_at = 0.0


class _Lease:
    __slots__ = ("agent_id", "expires_at")

    def __init__(self, agent_id: str, expires_at: float) -> None:
        self.agent_id = agent_id
        self.expires_at = expires_at


class _Seen:
    """The last activity the tick saw of a live lazy provider."""

    __slots__ = ("cell", "count", "since")

    def __init__(self, cell: Any, count: int, since: float) -> None:
        self.cell = cell
        self.count = count
        self.since = since


def _check_ttl(ttl: Any) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise HostError(f"a lease ttl must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


def select_spec(cls: type, service: str | None, where: str) -> ResidentServiceSpec:
    """The `RESIDENT_SERVICES` entry of `cls` named `service` (its contract name); with no
    name, the only entry. `where` names the config entry in errors."""
    name = f"{cls.__module__}:{cls.__qualname__}"
    specs = getattr(cls, "RESIDENT_SERVICES", ())
    if not isinstance(specs, tuple | list) or not all(
        isinstance(s, ResidentServiceSpec) for s in specs
    ):
        raise HostError(
            f"{name}.RESIDENT_SERVICES must be a tuple of ResidentServiceSpec, got {specs!r}"
        )
    if not specs:
        raise HostError(
            f"{where}: {name} declares no RESIDENT_SERVICES; add "
            "RESIDENT_SERVICES = (ResidentServiceSpec(CONTRACT),) to the class"
        )
    if service is None:
        if len(specs) == 1:
            return specs[0]
        names = ", ".join(s.contract.name for s in specs)
        raise HostError(f"{where}: {name} has several resident services ({names}); set service")
    for spec in specs:
        if spec.contract.name == service:
            return spec
    names = ", ".join(s.contract.name for s in specs)
    raise HostError(f"{where}: {name} has no resident service {service!r}; it has: {names}")


class ResidentManager:
    """The resident services of one host (module docstring)."""

    def __init__(self, host: Host, registry: ServiceRegistry) -> None:
        self.host = host
        self.registry = registry
        self._lock = threading.Lock()
        self._by_id: dict[str, _Resident] = {}
        self._leases: dict[str, _Lease] = {}
        self._seen: dict[str, _Seen] = {}
        self._pending: set[str] = set()  # ids with a tick action running on the pool
        self._started = False
        self._eager_started = False

    # -- enabling ------------------------------------------------------------------------

    def enable(
        self,
        agent_cls: type | str,
        service: str | None = None,
        *,
        agent_id: str | None = None,
        lifecycle: ResidentLifecycle | str | None = None,
        scope: ServiceScope | str | None = None,
        idle_timeout: float | None = None,
        state: Any = None,
        init: Any = None,
        where: str = "resident service",
    ) -> ResidentServiceSpec:
        """Run `service` of `agent_cls` as a resident service here; the keywords override
        the class's spec. After start, it is advertised (and an eager one started) at once."""
        cls = self.host.classes.get(agent_cls).cls
        spec = select_spec(cls, service, where)
        changes: dict[str, Any] = {}
        if agent_id is not None:
            changes["agent_id"] = agent_id
        if lifecycle is not None:
            changes["lifecycle"] = lifecycle
        if scope is not None:
            changes["scope"] = scope
        if idle_timeout is not None:
            changes["idle_timeout"] = idle_timeout
        if state is not None:
            base = spec.state
            if isinstance(base, Mapping) and isinstance(state, Mapping):
                changes["state"] = {**base, **state}
            else:
                changes["state"] = state
        try:
            spec = dataclasses.replace(spec, **changes) if changes else spec
        except (TypeError, ValueError) as exc:
            raise HostError(f"{where}: {exc}") from None
        class_name = f"{cls.__module__}:{cls.__qualname__}"
        resident = _Resident(cls, class_name, spec, init)
        with self._lock:
            other = self._by_id.get(resident.agent_id)
            if other is not None:
                raise HostError(
                    f"{where}: agent id {resident.agent_id!r} is already used by resident "
                    f"service {other.spec.contract.name!r} of {other.class_name}; set agent_id"
                )
            self._by_id[resident.agent_id] = resident
            started, eager_started = self._started, self._eager_started
        if started:
            self._advertise(resident)
            if eager_started and spec.lifecycle is ResidentLifecycle.EAGER:
                self._start_eager(resident)
        return spec

    def specs(self) -> list[ResidentServiceSpec]:
        return [r.spec for r in self._by_id.values()]

    def is_resident(self, agent_id: str) -> bool:
        return agent_id in self._by_id

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        """Advertise every enabled service (before recovery, so hooks can look them up)."""
        with self._lock:
            self._started = True
            residents = list(self._by_id.values())
        for resident in residents:
            self._advertise(resident)

    def start_eager(self) -> None:
        """Start the eager providers (after recovery: a recovered one is simply live)."""
        self._eager_started = True
        for resident in list(self._by_id.values()):
            if resident.spec.lifecycle is ResidentLifecycle.EAGER:
                self._start_eager(resident)

    def _advertise(self, resident: _Resident) -> None:
        spec = resident.spec
        self.registry.advertise(
            resident.agent_id,
            spec.contract.name,
            capabilities=spec.contract.capabilities,
            metadata=spec.contract.advertise_metadata()
            | {RESIDENT_METADATA_KEY: spec.lifecycle.value},
            scope=spec.scope,
            resident=True,
        )

    def _start_eager(self, resident: _Resident) -> None:
        try:
            self._ensure(resident)
        except Exception as exc:
            self._failed(resident, exc)

    def _failed(self, resident: _Resident, exc: BaseException) -> None:
        resident.failures += 1
        delay = min(RETRY_MAX, RETRY_MIN * 2 ** (resident.failures - 1))
        resident.retry_at = time.monotonic() + delay
        error = f"{type(exc).__name__}: {exc}"
        log.warning(
            "resident service %r (%s) did not start: %s; retrying in %.0fs",
            resident.spec.contract.name,
            resident.agent_id,
            error,
            delay,
        )
        self.host.events.emit(
            "service-start-failed",
            agent_id=resident.agent_id,
            class_name=resident.class_name,
            service_name=resident.spec.contract.name,
            error=error,
        )

    def shutdown(self) -> None:
        """Host shutdown: lazy providers sleep without `activate_on_startup` (they come back
        on demand, not at the next start). Leases end with the host."""
        from paglets.persistence import DeactivationPolicy, DeactivationRequest

        request = DeactivationRequest(
            reason="shutdown", source=MANAGER_SOURCE, policy=DeactivationPolicy()
        )
        for resident in list(self._by_id.values()):
            if resident.spec.lifecycle is not ResidentLifecycle.LAZY:
                continue
            if resident.agent_id not in self.host.registry.live:
                continue
            try:
                self.host.lifecycle.deactivate(resident.agent_id, request, timeout=2.0)
            except Exception as exc:  # shutdown_all saves it anyway
                log.debug("lazy provider %s not put to sleep: %s", resident.agent_id, exc)
        with self._lock:
            self._leases.clear()

    # -- providers on demand ---------------------------------------------------------------

    def _resident(self, agent_id: str) -> _Resident:
        resident = self._by_id.get(agent_id)
        if resident is None:
            raise ServiceNotFoundError(
                f"{agent_id!r} is not a managed resident service on host {self.host.name!r}",
                code="service-not-found",
            )
        return resident

    def ensure(self, agent_id: str) -> dict[str, Any]:
        """Create, activate or restart the provider `agent_id`; returns `{proxy}` (wire)."""
        resident = self._resident(agent_id)
        self._ensure(resident)
        return {"proxy": self.host.proxy(agent_id).to_wire()}

    def _ensure(self, resident: _Resident) -> None:
        host = self.host
        agent_id = resident.agent_id
        if agent_id in host.registry.live:
            return
        with resident.lock:  # one creator per service, however many callers race
            if agent_id in host.registry.live:
                return
            host._require_running()
            if host.store.has_agent(agent_id):
                host.activate(agent_id)  # inactive, crashed or being recovered
            else:
                try:
                    host.create(resident.cls, resident.state, init=resident.init, agent_id=agent_id)
                except DuplicateAgentError:
                    if agent_id not in host.registry.live:
                        host.activate(agent_id)
            resident.failures = 0
            resident.retry_at = 0.0

    # -- leases ----------------------------------------------------------------------------

    def lease(
        self,
        agent_id: str | None = None,
        service_name: str | None = None,
        ttl: float = 60.0,
    ) -> dict[str, Any]:
        """Lease a provider (by id, or by its contract name); starts it if needed."""
        ttl = _check_ttl(ttl)
        if agent_id is None:
            if service_name is None:
                raise HostError("a lease needs agent_id or service_name")
            matches = [r for r in self._by_id.values() if r.spec.contract.name == service_name]
            if not matches:
                raise ServiceNotFoundError(
                    f"no managed resident service {service_name!r} on host {self.host.name!r}",
                    code="service-not-found",
                )
            resident = matches[0]
        else:
            resident = self._resident(agent_id)
            if service_name is not None and resident.spec.contract.name != service_name:
                raise ServiceNotFoundError(
                    f"{agent_id!r} provides {resident.spec.contract.name!r}, not {service_name!r}",
                    code="service-not-found",
                )
        lease_id = uuid.uuid4().hex
        expires_at = time.time() + ttl
        with self._lock:  # held before the start, so the new provider cannot idle out
            self._leases[lease_id] = _Lease(resident.agent_id, expires_at)
        try:
            self._ensure(resident)
        except BaseException:
            with self._lock:
                self._leases.pop(lease_id, None)
            raise
        return {"lease_id": lease_id, "expires_at": expires_at, "agent_id": resident.agent_id}

    def renew(self, lease_id: str, ttl: float | None = None) -> dict[str, Any]:
        ttl = 60.0 if ttl is None else _check_ttl(ttl)
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None or lease.expires_at <= time.time():
                self._leases.pop(lease_id, None)
                raise ServiceNotFoundError(
                    f"lease {lease_id!r} is unknown or expired on host {self.host.name!r}; "
                    "lease the service again",
                    code="lease-not-found",
                )
            lease.expires_at = time.time() + ttl
            return {"lease_id": lease_id, "expires_at": lease.expires_at}

    def release(self, lease_id: str) -> dict[str, Any]:
        with self._lock:
            lease = self._leases.pop(lease_id, None)
        return {"released": lease is not None and lease.expires_at > time.time()}

    def leases_of(self, agent_id: str) -> int:
        now = time.time()
        with self._lock:
            return sum(
                1 for x in self._leases.values() if x.agent_id == agent_id and x.expires_at > now
            )

    # -- the tick --------------------------------------------------------------------------

    def tick(self) -> None:
        """On the host's loop, every fraction of a second: note activity, put idle lazy
        providers to sleep and restart missing eager ones (both on the worker pool)."""
        host = self.host
        if host.stopped:
            return
        now = time.monotonic()
        wall = time.time()
        with self._lock:
            for lease_id in [k for k, x in self._leases.items() if x.expires_at <= wall]:
                del self._leases[lease_id]
            leased = {x.agent_id for x in self._leases.values()}
        for resident in list(self._by_id.values()):
            agent_id = resident.agent_id
            if agent_id in self._pending:
                continue
            cell = host.registry.live.get(agent_id)
            if resident.spec.lifecycle is ResidentLifecycle.EAGER:
                if cell is None and self._eager_started and now >= resident.retry_at:
                    self._submit(agent_id, self._start_eager, resident)
                continue
            if cell is None:
                self._seen.pop(agent_id, None)
                continue
            count = cell.delivered + cell.failed
            seen = self._seen.get(agent_id)
            if (
                seen is None
                or seen.cell is not cell
                or seen.count != count
                or cell.busy
                or cell.queued_count()
                or agent_id in leased
            ):
                self._seen[agent_id] = _Seen(cell, count, now)
                continue
            if now - seen.since >= resident.spec.idle_timeout:
                self._submit(agent_id, self._sleep, resident, cell)

    def _submit(self, agent_id: str, fn: Any, *args: Any) -> None:
        self._pending.add(agent_id)

        def job() -> None:
            try:
                fn(*args)
            finally:
                self._pending.discard(agent_id)

        try:
            self.host.pool.submit(job)
        except RuntimeError:
            self._pending.discard(agent_id)  # the pool is closed: the host is stopping

    def _sleep(self, resident: _Resident, cell: Any) -> None:
        """Deactivate an idle lazy provider, unless it got busy or leased meanwhile."""
        from paglets.persistence import DeactivationPolicy, DeactivationRequest

        host = self.host
        agent_id = resident.agent_id
        with resident.lock:
            if host.registry.live.get(agent_id) is not cell or cell.busy or cell.queued_count():
                return
            if self.leases_of(agent_id):
                return
            request = DeactivationRequest(
                reason=IDLE_REASON, source=MANAGER_SOURCE, policy=DeactivationPolicy()
            )
            try:
                host.deactivate(agent_id, request)
            except InvalidAgentError:
                pass  # it left meanwhile
            except Exception as exc:
                log.warning("idle resident provider %s not deactivated: %s", agent_id, exc)
            self._seen.pop(agent_id, None)

    # -- diagnostics -----------------------------------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        """One dict per enabled service: contract, id, lifecycle, scope, live, leases."""
        out = []
        for resident in self._by_id.values():
            spec = resident.spec
            out.append(
                {
                    "service": spec.contract.name,
                    "version": spec.contract.version,
                    "agent_id": resident.agent_id,
                    "class_name": resident.class_name,
                    "lifecycle": spec.lifecycle.value,
                    "scope": spec.scope.value,
                    "idle_timeout": spec.idle_timeout,
                    "live": resident.agent_id in self.host.registry.live,
                    "leases": self.leases_of(resident.agent_id),
                }
            )
        return out
