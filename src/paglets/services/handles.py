"""`ServiceHandle` (typed calls to one provider) and `ServiceLease` (api.md §16.2).

A handle pairs a contract with a record. Its calls are ordinary messages to the provider's
proxy, checked on both ends by the contract. When the record is a managed resident service
and the provider is not there (a lazy one never started, or a crashed one), the handle asks
the owning host to start it and sends once more; so steady-state calls cost one message and
nothing else.

A lease keeps a resident provider from idling out until it is released or expires. Lease
operations go to the owning host: directly when it runs in this process, else over HTTP
(`POST /services/leases`, `…/{lease_id}/renew`, `…/{lease_id}/release`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from paglets.core.errors import (
    InvalidAgentError,
    PagletCrashedError,
    PagletMovedError,
    ServiceNotFoundError,
)
from paglets.services.contracts import (
    RESIDENT_METADATA_KEY,
    ServiceContract,
    ServiceOperation,
)
from paglets.services.records import ServiceRecord

if TYPE_CHECKING:
    from paglets.remote.proxy import PagletProxy

__all__ = ["ServiceHandle", "ServiceLease", "is_resident_record", "lease_handle"]

OWNER_TIMEOUT = 10.0


def is_resident_record(record: ServiceRecord) -> bool:
    """Whether the record advertises a managed resident service (which can be leased and is
    started by its host on demand)."""
    return bool(record.metadata.get(RESIDENT_METADATA_KEY)) if record.metadata else False


def _client_of(context_or_client: Any) -> Any:
    """The HostClient to reach other hosts with: a context's (or Host's) own client, the one
    given, else the process default."""
    if context_or_client is not None:
        host = getattr(context_or_client, "_host", None)
        if host is None and hasattr(context_or_client, "peer_client"):
            host = context_or_client
        if host is not None:
            return host.peer_client
        return context_or_client
    from paglets.remote.client import HostClient

    return HostClient.default()


def _owner(host_url: str, client: Any) -> Any:
    """The host running in this process at `host_url` (None: reach it over HTTP)."""
    if client is not None and not getattr(client, "in_process", True):
        return None
    from paglets.runtime import local_hosts

    host = local_hosts.lookup(host_url)
    if host is None or host.stopped:
        return None
    return host


def owner_call(host_url: str, client: Any, op: str, path: str, payload: dict[str, Any]) -> Any:
    """`op` of the resident service manager of the host at `host_url`: a direct call when
    that host runs in this process, else `POST {host_url}{path}` with `payload`."""
    owner = _owner(host_url, client)
    if owner is not None:
        return getattr(owner.services.resident, op)(**payload)
    if client is None:
        client = _client_of(None)
    return client.post_json(host_url.rstrip("/") + path, payload, timeout=OWNER_TIMEOUT)


class ServiceHandle:
    """Calls to one provider of `contract`, found as `record`.

    `context_or_client`: a `PagletContext` (calls carry that paglet as sender), a
    `HostClient`, or `None` (the running paglet's context, else `HostClient.default()`).
    """

    __slots__ = ("_contract", "_proxy", "_record", "_resident", "_target")

    def __init__(
        self,
        contract: ServiceContract,
        record: ServiceRecord,
        context_or_client: Any = None,
    ) -> None:
        if not isinstance(contract, ServiceContract):
            raise TypeError(f"ServiceHandle needs a ServiceContract, got {contract!r}")
        if not isinstance(record, ServiceRecord):
            raise TypeError(f"ServiceHandle needs a ServiceRecord, got {record!r}")
        self._contract = contract
        self._record = record
        self._target = context_or_client
        self._proxy: PagletProxy | None = None
        self._resident = is_resident_record(record)

    def __repr__(self) -> str:
        return (
            f"ServiceHandle({self._contract.name!r} v{self._contract.version}, "
            f"{self._record.agent_id!r} at {self._record.host_url})"
        )

    @property
    def contract(self) -> ServiceContract:
        return self._contract

    @property
    def record(self) -> ServiceRecord:
        return self._record

    @property
    def proxy(self) -> PagletProxy:
        proxy = self._proxy
        if proxy is None:
            proxy = self._proxy = self._record.proxy.resolve(self._target)
        return proxy

    @property
    def client(self) -> Any:
        """The client used for lease and start requests to the owning host."""
        return _client_of(self._target)

    # -- calls -------------------------------------------------------------------------

    def call(
        self,
        op: ServiceOperation[Any, Any] | str,
        request: Any = None,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Call `op` with `request` (`None` = its default) and return the typed reply."""
        operation = self._contract.require_operation(op)
        message = operation.to_message(request)
        proxy = self.proxy
        try:
            reply = proxy.send(
                message,
                activate_if_inactive=activate_if_inactive,
                no_delay=no_delay,
                timeout=timeout,
            )
        except (InvalidAgentError, PagletCrashedError) as exc:
            if not self._may_start(exc, activate_if_inactive):
                raise
            self.ensure_provider()
            reply = proxy.send(
                message,
                activate_if_inactive=activate_if_inactive,
                no_delay=no_delay,
                timeout=timeout,
            )
        return operation.decode_reply(reply)

    async def call_async(
        self,
        op: ServiceOperation[Any, Any] | str,
        request: Any = None,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """`call` for async code (an `async def handle_message`, a client coroutine)."""
        operation = self._contract.require_operation(op)
        message = operation.to_message(request)
        proxy = self.proxy
        try:
            reply = await proxy.send_async(
                message,
                activate_if_inactive=activate_if_inactive,
                no_delay=no_delay,
                timeout=timeout,
            )
        except (InvalidAgentError, PagletCrashedError) as exc:
            if not self._may_start(exc, activate_if_inactive):
                raise
            await asyncio.to_thread(self.ensure_provider)
            reply = await proxy.send_async(
                message,
                activate_if_inactive=activate_if_inactive,
                no_delay=no_delay,
                timeout=timeout,
            )
        return operation.decode_reply(reply)

    def send_oneway(
        self,
        op: ServiceOperation[Any, Any] | str,
        request: Any = None,
        *,
        activate_if_inactive: bool = True,
        no_delay: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Queue `op` at the provider and return without its reply."""
        operation = self._contract.require_operation(op)
        message = operation.to_message(request)
        kwargs: dict[str, Any] = {
            "activate_if_inactive": activate_if_inactive,
            "no_delay": no_delay,
            "timeout": timeout,
        }
        proxy = self.proxy
        try:
            proxy.send_oneway(message, **kwargs)
        except (InvalidAgentError, PagletCrashedError) as exc:
            if not self._may_start(exc, activate_if_inactive):
                raise
            self.ensure_provider()
            proxy.send_oneway(message, **kwargs)

    def _may_start(self, exc: BaseException, activate_if_inactive: bool) -> bool:
        """A resident provider that is missing or crashed is started by its host; a paglet
        that moved away is not a resident provider any more."""
        return self._resident and activate_if_inactive and not isinstance(exc, PagletMovedError)

    def ensure_provider(self) -> None:
        """Ask the owning host to create, activate or restart this resident provider."""
        record = self._record
        if not self._resident:
            raise ServiceNotFoundError(
                f"service {record.name!r} of paglet {record.agent_id!r} is not a managed "
                "resident service; its host does not start it on demand"
            )
        owner_call(
            record.host_url,
            self._proxy_client(),
            "ensure",
            "/services/resident/ensure",
            {"agent_id": record.agent_id},
        )

    def _proxy_client(self) -> Any:
        proxy = self.proxy
        return proxy.client if proxy.client is not None else self.client

    def lease(self, *, ttl: float = 60.0) -> ServiceLease:
        """Lease this provider (resident services only); see `ServiceLease`."""
        return lease_handle(self, ttl=ttl)


class ServiceLease:
    """A hold on a resident provider: while held (until `release()` or `expires_at`) a lazy
    provider does not idle out. As a context manager it yields the handle and releases on
    exit. `renew(ttl)` extends it from now."""

    __slots__ = (
        "_lock",
        "_on_release",
        "client",
        "expires_at",
        "handle",
        "host_url",
        "lease_id",
        "released",
        "ttl",
    )

    def __init__(
        self,
        handle: ServiceHandle,
        lease_id: str,
        host_url: str,
        expires_at: float,
        client: Any,
        *,
        ttl: float = 60.0,
    ) -> None:
        self.handle = handle
        self.lease_id = lease_id
        self.host_url = host_url
        self.expires_at = float(expires_at)
        self.client = client
        self.ttl = float(ttl)
        self.released = False
        self._lock = threading.Lock()
        self._on_release: list[Callable[[], Any]] = []

    def __repr__(self) -> str:
        state = "released" if self.released else f"until {self.expires_at:.0f}"
        return f"ServiceLease({self.lease_id!r} on {self.handle.record.name!r}, {state})"

    def __enter__(self) -> ServiceHandle:
        return self.handle

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at

    def renew(self, ttl: float | None = None) -> float:
        """Extend the lease to `ttl` seconds from now (default: the lease's own ttl); returns
        the new `expires_at`. A released or expired lease is a `ServiceNotFoundError`."""
        if self.released:
            raise ServiceNotFoundError(f"lease {self.lease_id!r} was released; lease again")
        ttl = self.ttl if ttl is None else _check_ttl(ttl)
        answer = owner_call(
            self.host_url,
            self.client,
            "renew",
            f"/services/leases/{self.lease_id}/renew",
            {"lease_id": self.lease_id, "ttl": ttl},
        )
        self.ttl = ttl
        self.expires_at = float(answer["expires_at"])
        return self.expires_at

    def release(self) -> bool:
        """Give the lease back (idempotent). True if the host still held it."""
        with self._lock:
            if self.released:
                return False
            self.released = True
            callbacks, self._on_release = self._on_release, []
        for callback in callbacks:
            callback()
        answer = owner_call(
            self.host_url,
            self.client,
            "release",
            f"/services/leases/{self.lease_id}/release",
            {"lease_id": self.lease_id},
        )
        return bool(answer.get("released") if isinstance(answer, dict) else answer)

    def on_release(self, callback: Callable[[], Any]) -> None:
        """Run `callback()` when the lease is released (used to drop it from a paglet's
        resources)."""
        self._on_release.append(callback)


def _check_ttl(ttl: Any) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValueError(f"a lease ttl must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


def lease_handle(handle: ServiceHandle, *, ttl: float = 60.0, client: Any = None) -> ServiceLease:
    """Lease the provider behind `handle` from its host. Only managed resident services can
    be leased (else `ServiceNotFoundError`); the lease starts the provider if needed."""
    ttl = _check_ttl(ttl)
    record = handle.record
    if not is_resident_record(record):
        raise ServiceNotFoundError(
            f"service {record.name!r} of paglet {record.agent_id!r} on {record.host_name or record.host_url} "
            "is not a managed resident service; only those can be leased"
        )
    client = client if client is not None else handle.client
    answer = owner_call(
        record.host_url,
        client,
        "lease",
        "/services/leases",
        {"agent_id": record.agent_id, "service_name": record.name, "ttl": ttl},
    )
    return ServiceLease(
        handle,
        str(answer["lease_id"]),
        record.host_url,
        float(answer["expires_at"]),
        client,
        ttl=ttl,
    )
