"""The service helpers of `PagletContext`, `Paglet` and `Host` (api.md §1.10, §10).

They are mixins so that `core/agent.py` and `runtime/host.py` stay small: each method is a
thin call into the host's `ServiceRegistry` (`host.services.registry`) or the resident
service manager. Nothing heavy is imported until a helper runs. `lookup_services`,
`lookup_contract(s)`, `require_contract` and `lease_contract` read the same on all three, so
they are written once (`_ContractLookups`); each mixin says only which host, which handle
target and what holds a lease.

* context: `advertise_service(name, …, agent_id=None)`, `unadvertise_service`,
  `lookup_service` (a `PagletProxyRef`), `lookup_services` (records),
  `advertise_contract`, `lookup_contract(s)` (handles), `require_contract`,
  `lease_contract`, and (**New**) `service_settings(name)`;
* `Paglet`: the same without `agent_id=`;
* `Host`: `advertise_service(agent_id, name, …)`, `unadvertise_service`,
  `lookup_service` (a `ServiceRecord`), `lookup_services`, `lease_service_handle`, and
  (**New**) `advertise_contract(agent_id, contract, …)`, `lookup_contract(s)`,
  `require_contract`, `lease_contract`.

A lease taken through a paglet's context is also a suppressed resource of that paglet, so it
is released when the paglet moves, sleeps or is disposed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from paglets.core.runtime_values import ServiceScope

if TYPE_CHECKING:
    from paglets.remote.references import PagletProxyRef
    from paglets.services.contracts import ServiceContract, ServiceOperation
    from paglets.services.handles import ServiceHandle, ServiceLease
    from paglets.services.records import ServiceRecord

__all__ = ["ContextServiceHelpers", "HostServiceMethods", "PagletServiceHelpers"]

LOCAL = ServiceScope.LOCAL


# -- shared implementations ----------------------------------------------------------------


def _registry(host: Any) -> Any:
    services = getattr(host, "services", None)
    if services is None:
        from paglets.core.errors import HostError

        raise HostError(f"host {getattr(host, 'name', '?')!r} has no service registry")
    return services.registry


def _find(
    host: Any,
    contract: ServiceContract,
    operation: ServiceOperation[Any, Any] | str | None,
    scope: ServiceScope | str,
    first: bool,
) -> list[ServiceRecord]:
    from paglets.services.contracts import ServiceContract

    if not isinstance(contract, ServiceContract):
        raise TypeError(f"expected a ServiceContract, got {contract!r}")
    capability = None if operation is None else contract.require_operation(operation).name
    return _registry(host).lookup(
        contract.name, capability=capability, scope=scope, contract=contract, first=first
    )


def _handles(records: list[ServiceRecord], contract: ServiceContract, target: Any) -> list[Any]:
    from paglets.services.handles import ServiceHandle

    return [ServiceHandle(contract, record, target) for record in records]


def _not_found(contract: ServiceContract, operation: Any, scope: ServiceScope | str) -> Exception:
    from paglets.services.contracts import ServiceNotFoundError

    op = ""
    if operation is not None:
        op = f" with operation {getattr(operation, 'name', operation)!r}"
    return ServiceNotFoundError(
        f"no provider of contract {contract.name!r} version {contract.version!r}{op} in "
        f"{ServiceScope(scope).value} scope; is the service advertised (and, for mesh scope, "
        "advertised with scope=MESH on a member running the same code version)?",
        code="service-not-found",
    )


def _lease(
    host: Any,
    contract: ServiceContract,
    operation: Any,
    scope: ServiceScope | str,
    ttl: float,
    target: Any,
) -> ServiceLease:
    from paglets.services.contracts import ServiceNotFoundError
    from paglets.services.handles import is_resident_record, lease_handle

    records = _find(host, contract, operation, scope, first=False)
    resident = [r for r in records if is_resident_record(r)]
    if not resident:
        if records:
            raise ServiceNotFoundError(
                f"contract {contract.name!r} is advertised, but not as a managed resident "
                "service; only those can be leased",
                code="service-not-found",
            )
        raise _not_found(contract, operation, scope)
    return lease_handle(_handles(resident[:1], contract, target)[0], ttl=ttl)


def _advertise_contract(
    host: Any,
    agent_id: str,
    contract: ServiceContract,
    scope: ServiceScope | str,
    ttl: float | None,
    metadata: Mapping[str, Any] | None,
) -> ServiceRecord:
    return _registry(host).advertise(
        agent_id,
        contract.name,
        capabilities=contract.capabilities,
        metadata=contract.advertise_metadata(metadata),
        scope=scope,
        ttl=ttl,
    )


# -- the contract helpers, one implementation for all three --------------------------------


class _ContractLookups:
    """The lookups that read the same on a context, a paglet and a host; each says which host
    holds the registry (`_services_host`), what a handle calls through (`_services_target`)
    and what holds a lease it takes (`_keep_lease`)."""

    __slots__ = ()

    def _services_host(self) -> Any:
        raise NotImplementedError

    def _services_target(self) -> Any:
        raise NotImplementedError

    def _keep_lease(self, lease: ServiceLease) -> None:
        """Nothing by default: the caller holds the lease."""

    def lookup_services(
        self,
        name: str | None = None,
        *,
        capability: str | None = None,
        scope: ServiceScope | str = LOCAL,
    ) -> list[ServiceRecord]:
        return _registry(self._services_host()).lookup(name, capability=capability, scope=scope)

    def lookup_contract(
        self,
        contract: ServiceContract,
        *,
        operation: ServiceOperation[Any, Any] | str | None = None,
        scope: ServiceScope | str = LOCAL,
    ) -> ServiceHandle | None:
        found = _find(self._services_host(), contract, operation, scope, first=True)
        return _handles(found, contract, self._services_target())[0] if found else None

    def lookup_contracts(
        self,
        contract: ServiceContract,
        *,
        operation: ServiceOperation[Any, Any] | str | None = None,
        scope: ServiceScope | str = LOCAL,
    ) -> list[ServiceHandle]:
        found = _find(self._services_host(), contract, operation, scope, first=False)
        return _handles(found, contract, self._services_target())

    def require_contract(
        self,
        contract: ServiceContract,
        *,
        operation: ServiceOperation[Any, Any] | str | None = None,
        scope: ServiceScope | str = LOCAL,
    ) -> ServiceHandle:
        handle = self.lookup_contract(contract, operation=operation, scope=scope)
        if handle is None:
            raise _not_found(contract, operation, scope)
        return handle

    def lease_contract(
        self,
        contract: ServiceContract,
        *,
        operation: ServiceOperation[Any, Any] | str | None = None,
        scope: ServiceScope | str = LOCAL,
        ttl: float = 60.0,
    ) -> ServiceLease:
        target = self._services_target()
        lease = _lease(self._services_host(), contract, operation, scope, ttl, target)
        self._keep_lease(lease)
        return lease


# -- PagletContext -------------------------------------------------------------------------


class ContextServiceHelpers(_ContractLookups):
    """Mixed into `PagletContext` (which provides `_host`, `_own_id`, `_cell`)."""

    __slots__ = ()

    _host: Any
    _cell: Any
    _own_id: Any  # PagletContext._own_id(agent_id=None) -> str

    def _services_host(self) -> Any:
        return self._host

    def _services_target(self) -> Any:
        return self

    def _keep_lease(self, lease: ServiceLease) -> None:
        cell = self._cell
        if cell is not None:
            # Held by this paglet: released when it leaves (a suppressed resource).
            resources = cell.paglet.resources
            name = f"service-lease:{lease.lease_id}"
            resources.register(name, lease.release, suppress=True)
            lease.on_release(lambda: resources.remove(name))

    def advertise_service(
        self,
        name: str,
        *,
        capabilities: Any = None,
        metadata: Mapping[str, Any] | None = None,
        scope: ServiceScope | str = LOCAL,
        ttl: float | None = None,
        agent_id: str | None = None,
    ) -> ServiceRecord:
        return _registry(self._host).advertise(
            self._own_id(agent_id),
            name,
            capabilities=capabilities,
            metadata=metadata,
            scope=scope,
            ttl=ttl,
        )

    def unadvertise_service(self, name: str, *, agent_id: str | None = None) -> list[ServiceRecord]:
        return _registry(self._host).unadvertise(name, agent_id=self._own_id(agent_id))

    def lookup_service(
        self, name: str, *, capability: str | None = None, scope: ServiceScope | str = LOCAL
    ) -> PagletProxyRef | None:
        found = _registry(self._host).lookup(name, capability=capability, scope=scope, first=True)
        return found[0].proxy if found else None

    def advertise_contract(
        self,
        contract: ServiceContract,
        *,
        scope: ServiceScope | str = LOCAL,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> ServiceRecord:
        return _advertise_contract(
            self._host, self._own_id(agent_id), contract, scope, ttl, metadata
        )

    def service_settings(self, name: str) -> dict[str, Any]:
        """**New.** The launch config's `[services.<name>]` tunables (empty without)."""
        return self._host.services.settings(name)


# -- Paglet --------------------------------------------------------------------------------


class PagletServiceHelpers(_ContractLookups):
    """Mixed into `Paglet`: the context's helpers for this paglet (no `agent_id=`); the
    contract lookups come from `_ContractLookups` through the context."""

    __slots__ = ()

    context: Any  # Paglet.context

    def _services_host(self) -> Any:
        return self.context._services_host()

    def _services_target(self) -> Any:
        return self.context

    def _keep_lease(self, lease: ServiceLease) -> None:
        self.context._keep_lease(lease)

    def advertise_service(
        self,
        name: str,
        *,
        capabilities: Any = None,
        metadata: Mapping[str, Any] | None = None,
        scope: ServiceScope | str = LOCAL,
        ttl: float | None = None,
    ) -> ServiceRecord:
        return self.context.advertise_service(
            name, capabilities=capabilities, metadata=metadata, scope=scope, ttl=ttl
        )

    def unadvertise_service(self, name: str) -> list[ServiceRecord]:
        return self.context.unadvertise_service(name)

    def lookup_service(
        self, name: str, *, capability: str | None = None, scope: ServiceScope | str = LOCAL
    ) -> PagletProxyRef | None:
        return self.context.lookup_service(name, capability=capability, scope=scope)

    def advertise_contract(
        self,
        contract: ServiceContract,
        *,
        scope: ServiceScope | str = LOCAL,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ServiceRecord:
        return self.context.advertise_contract(contract, scope=scope, ttl=ttl, metadata=metadata)

    def service_settings(self, name: str) -> dict[str, Any]:
        return self.context.service_settings(name)


# -- Host ----------------------------------------------------------------------------------


class HostServiceMethods(_ContractLookups):
    """Mixed into `Host` (which provides `services`); handles and leases it hands out call
    through the host itself."""

    services: Any

    def _services_host(self) -> Any:
        return self

    def _services_target(self) -> Any:
        return self

    def advertise_service(
        self,
        agent_id: str,
        name: str,
        *,
        capabilities: Any = None,
        metadata: Mapping[str, Any] | None = None,
        scope: ServiceScope | str = LOCAL,
        ttl: float | None = None,
    ) -> ServiceRecord:
        return self.services.registry.advertise(
            agent_id, name, capabilities=capabilities, metadata=metadata, scope=scope, ttl=ttl
        )

    def unadvertise_service(self, name: str, *, agent_id: str | None = None) -> list[ServiceRecord]:
        return self.services.registry.unadvertise(name, agent_id=agent_id)

    def lookup_service(
        self, name: str, *, capability: str | None = None, scope: ServiceScope | str = LOCAL
    ) -> ServiceRecord | None:
        found = self.services.registry.lookup(name, capability=capability, scope=scope, first=True)
        return found[0] if found else None

    def lease_service_handle(self, handle: ServiceHandle, *, ttl: float = 60.0) -> ServiceLease:
        from paglets.services.handles import lease_handle

        return lease_handle(handle, ttl=ttl, client=self.peer_client)  # type: ignore[attr-defined]

    def advertise_contract(
        self,
        agent_id: str,
        contract: ServiceContract,
        *,
        scope: ServiceScope | str = LOCAL,
        ttl: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> ServiceRecord:
        return _advertise_contract(self, agent_id, contract, scope, ttl, metadata)
