"""The host's service registry: advertise, withdraw and look up services (api.md §16.2).

Local records live here in memory, in advertisement order. A record belongs to the
incarnation (mailbox cell) of the paglet that advertised it: it is hidden as soon as that
incarnation stops being live (moved, deactivated, disposed, crashed) and deleted when the
host's event log says so, so a paglet that comes back must advertise again. Resident
services are the exception: their records stand for the service, live provider or not.
TTLs are checked at lookup.

Mesh scope (network.md §3.4): each host publishes its mesh-scope records as one versioned
digest that rides on membership gossip (`remote/summaries.py`, kind `services`). A mesh
lookup reads the digests of alive, same-version, non-draining members from the membership
node, without a network call. A digest older than `stale_after` seconds that could hold a
match is confirmed by asking its owner (`GET /services`), all owners in parallel with a
short timeout; an owner that does not answer in time contributes nothing to that lookup.
Digests are kept small: a contract's operation schemas travel as its fingerprint.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paglets.core.errors import HostError, InvalidAgentError
from paglets.core.ids import validate_agent_id
from paglets.core.runtime_values import ServiceScope, coerce_enum
from paglets.remote.references import PagletProxyRef
from paglets.services.contracts import (
    CONTRACT_METADATA_KEY,
    RESIDENT_METADATA_KEY,
    ServiceContract,
)
from paglets.services.records import ServiceRecord

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["DIGEST_KIND", "ServiceRegistry"]

log = logging.getLogger("paglets.services")

DIGEST_KIND = "services"  # the summary kind of remote/summaries.py
STALE_AFTER = 3.0  # seconds: an older digest is confirmed with its owner before use
ASK_TIMEOUT = 1.0  # seconds: how long a lookup waits for owners' answers
INCARNATION_GRACE = 30.0  # a record of a paglet that never went live is dropped after this
MAX_NAME = 256


@dataclass(slots=True)
class _Entry:
    record: ServiceRecord
    cell: Any  # the advertising incarnation (None for resident records)


@dataclass(slots=True)
class _MemberView:
    host_id: str
    name: str
    url: str
    version: int
    body: Any
    age: float


@dataclass(slots=True)
class _Asked:
    version: int
    at: float
    records: list[ServiceRecord]


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise HostError(
            f"a service name must be a non-empty string of at most {MAX_NAME} characters, "
            f"got {name!r}"
        )
    return name


def _check_capabilities(capabilities: Any) -> tuple[str, ...]:
    if capabilities is None:
        return ()
    if isinstance(capabilities, str):
        capabilities = (capabilities,)
    out = []
    for cap in capabilities:
        if not isinstance(cap, str) or not cap:
            raise HostError(f"service capabilities must be non-empty strings, got {cap!r}")
        if cap not in out:
            out.append(cap)
    return tuple(out)


def _check_ttl(ttl: Any) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise HostError(f"a service ttl must be a positive number of seconds or None, got {ttl!r}")
    return float(ttl)


def _check_metadata(metadata: Any, *, resident: bool) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise HostError(f"service metadata must be a dict, got {type(metadata).__name__}")
    if not resident and RESIDENT_METADATA_KEY in metadata:
        raise HostError(
            f"service metadata key {RESIDENT_METADATA_KEY!r} is reserved for the resident "
            "service manager; use another key"
        )
    for key in metadata:
        if not isinstance(key, str):
            raise HostError(f"service metadata keys must be strings, got {key!r}")
    from paglets.serialization import codec

    return codec.to_wire_form(dict(metadata))


def _compact_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata for the gossiped digest: a contract's schemas become its fingerprint."""
    contract = metadata.get(CONTRACT_METADATA_KEY)
    if not isinstance(contract, Mapping):
        return dict(metadata)
    out = dict(metadata)
    out[CONTRACT_METADATA_KEY] = {
        "name": contract.get("name"),
        "version": contract.get("version"),
        "fingerprint": contract.get("fingerprint"),
    }
    return out


class ServiceRegistry:
    """One host's service records and its view of the mesh's (module docstring)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.stale_after = STALE_AFTER
        self.ask_timeout = ASK_TIMEOUT
        self.asks = 0  # owners asked so far (diagnostics)
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._by_agent: dict[str, set[str]] = {}
        self._resident: set[str] = set()
        self._asked: dict[str, _Asked] = {}
        self._digest_dirty = True

    # -- advertising ---------------------------------------------------------------------

    def advertise(
        self,
        agent_id: str,
        name: str,
        *,
        capabilities: Any = None,
        metadata: Mapping[str, Any] | None = None,
        scope: ServiceScope | str = ServiceScope.LOCAL,
        ttl: float | None = None,
        resident: bool = False,
    ) -> ServiceRecord:
        """Advertise `name` for the paglet `agent_id`, replacing its earlier record of that
        name. The paglet must be live here (or running its creation or arrival hooks)."""
        validate_agent_id(agent_id)
        name = _check_name(name)
        caps = _check_capabilities(capabilities)
        scope = coerce_enum(scope, ServiceScope, "scope")
        ttl = _check_ttl(ttl)
        resident = resident or agent_id in self._resident
        meta = _check_metadata(metadata, resident=resident)
        cell = None if resident else self._advertising_cell(agent_id)
        now = time.time()
        host = self.host
        record = ServiceRecord(
            name=name,
            proxy=PagletProxyRef(host.address, agent_id),
            capabilities=caps,
            metadata=meta,
            scope=scope,
            host_name=host.name,
            host_url=host.address,
            advertised_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        with self._lock:
            key = (agent_id, name)
            old = self._entries.get(key)
            if resident and old is not None and RESIDENT_METADATA_KEY not in meta:
                # A resident provider advertising its own contract stays a managed service.
                marker = old.record.metadata.get(RESIDENT_METADATA_KEY)
                if marker is not None:
                    record = dataclasses.replace(
                        record, metadata={**meta, RESIDENT_METADATA_KEY: marker}
                    )
            self._entries.pop(key, None)  # re-advertising moves it to the end
            self._entries[key] = _Entry(record, cell)
            self._by_agent.setdefault(agent_id, set()).add(name)
            if resident:
                self._resident.add(agent_id)
        self._changed()
        return record

    def _advertising_cell(self, agent_id: str) -> Any:
        from paglets.runtime import mailbox

        current = mailbox.current_cell()
        if current is not None and current.agent_id == agent_id and not current.gone:
            return current  # in its own turn: a hook before it went live counts
        cell = self.host.registry.live.get(agent_id)
        if cell is None:
            raise InvalidAgentError(
                f"paglet {agent_id!r} is not live on host {self.host.name!r}; only live "
                "paglets advertise services (advertise from on_creation, on_arrival, "
                "on_activation or a handler)",
                code="agent-not-found",
            )
        return cell

    def unadvertise(self, name: str, *, agent_id: str | None = None) -> list[ServiceRecord]:
        """Withdraw `name` (only `agent_id`'s record when given); returns what was removed."""
        removed: list[ServiceRecord] = []
        with self._lock:
            for key in [k for k in self._entries if k[1] == name]:
                if agent_id is None or key[0] == agent_id:
                    removed.append(self._pop(key).record)
        if removed:
            self._changed()
        return removed

    def withdraw_agent(self, agent_id: str) -> list[ServiceRecord]:
        """Remove every record of `agent_id` (resident ones included)."""
        with self._lock:
            removed = [
                self._pop((agent_id, n)).record for n in list(self._by_agent.get(agent_id, ()))
            ]
            self._resident.discard(agent_id)
        if removed:
            self._changed()
        return removed

    def _pop(self, key: tuple[str, str]) -> _Entry:
        entry = self._entries.pop(key)
        names = self._by_agent.get(key[0])
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._by_agent[key[0]]
        return entry

    # -- liveness ------------------------------------------------------------------------

    def _visible(self, entry: _Entry, now: float) -> bool:
        record = entry.record
        if record.expires_at is not None and now >= record.expires_at:
            return False
        cell = entry.cell
        if cell is None:
            return True
        return not cell.gone and self.host.registry.live.get(record.proxy.agent_id) is cell

    def _dead(self, entry: _Entry, now: float) -> bool:
        record = entry.record
        if record.expires_at is not None and now >= record.expires_at:
            return True
        cell = entry.cell
        if cell is None:
            return False
        if cell.gone:
            return True
        live = self.host.registry.live.get(record.proxy.agent_id)
        if live is cell:
            return False
        # Not live yet (its creation or arrival hooks run) or never went live (a hook failed).
        return live is not None or now - record.advertised_at > INCARNATION_GRACE

    def prune(self, agent_id: str | None = None) -> int:
        """Delete dead and expired records (of `agent_id` only, when given); returns how
        many. Runs on host events and on the service tick."""
        now = time.time()
        with self._lock:
            if agent_id is not None:
                keys = [(agent_id, n) for n in self._by_agent.get(agent_id, ())]
            else:
                keys = list(self._entries)
            dead = [k for k in keys if self._dead(self._entries[k], now)]
            for key in dead:
                self._pop(key)
        if dead:
            self._changed()
        return len(dead)

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._by_agent

    # -- local lookups -------------------------------------------------------------------

    def local_records(
        self,
        name: str | None = None,
        *,
        capability: str | None = None,
        contract: ServiceContract | None = None,
        first: bool = False,
    ) -> list[ServiceRecord]:
        """This host's visible records (both scopes), oldest advertisement first."""
        now = time.time()
        out: list[ServiceRecord] = []
        expired = False
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            record = entry.record
            if name is not None and record.name != name:
                continue
            if not self._visible(entry, now):
                expired = expired or record.expired_at(now)
                continue
            if capability is not None and capability not in record.capabilities:
                continue
            if contract is not None and not contract.matches_record(record):
                continue
            out.append(record)
            if first:
                break
        if expired:
            self.prune()
        return out

    def lookup(
        self,
        name: str | None = None,
        *,
        capability: str | None = None,
        scope: ServiceScope | str = ServiceScope.LOCAL,
        contract: ServiceContract | None = None,
        first: bool = False,
    ) -> list[ServiceRecord]:
        """Records matching every filter. `LOCAL`: this host's; `MESH`: this host's first,
        then other members' mesh-scope records. `first=True` stops at the first match."""
        scope = coerce_enum(scope, ServiceScope, "scope")
        found = self.local_records(name, capability=capability, contract=contract, first=first)
        if scope is ServiceScope.LOCAL or (first and found):
            return found
        for record in self._mesh_records(name, capability, contract):
            found.append(record)
            if first:
                break
        return found

    # -- the digest ----------------------------------------------------------------------

    def digest(self) -> dict[str, Any]:
        """This host's mesh-scope records in the gossiped form."""
        now = time.time()
        with self._lock:
            entries = list(self._entries.values())
        rows = []
        for entry in entries:
            record = entry.record
            if record.scope is not ServiceScope.MESH or not self._visible(entry, now):
                continue
            rows.append(
                {
                    "n": record.name,
                    "a": record.proxy.agent_id,
                    "c": list(record.capabilities),
                    "m": _compact_metadata(record.metadata),
                    "t": record.advertised_at,
                    "x": record.expires_at,
                }
            )
        return {"records": rows}

    def _changed(self) -> None:
        """Publish the digest again (the summary book drops an unchanged body)."""
        self._digest_dirty = True
        loop = self.host._loop
        if loop is None or self.host.mesh is None:
            return
        try:
            loop.call_soon_threadsafe(self.publish)
        except RuntimeError:
            pass  # the loop is closed: the host is stopping

    def publish(self) -> None:
        """On the host's loop: hand the digest to the membership node."""
        node = self.host.mesh
        if node is None or not getattr(node, "running", False):
            return
        self._digest_dirty = False
        try:
            node.publish(DIGEST_KIND, self.digest())
        except Exception as exc:  # never break the loop for a digest
            self._digest_dirty = True
            log.warning("service digest not published: %s", exc)

    def publish_if_dirty(self) -> None:
        if self._digest_dirty:
            self.publish()

    # -- mesh lookups --------------------------------------------------------------------

    def _members(self) -> list[_MemberView]:
        """On the loop: alive, same-version, non-draining members and their digests."""
        node = self.host.mesh
        if node is None:
            return []
        now = node.clock.time()
        out = []
        for member in node.members():
            if not member.is_target:
                continue
            stored = member.summaries.get(DIGEST_KIND)
            if stored is None:
                continue
            out.append(
                _MemberView(
                    member.host_id,
                    member.name,
                    member.url,
                    stored.version,
                    stored.body,
                    now - stored.received_at,
                )
            )
        return out

    def _mesh_records(
        self, name: str | None, capability: str | None, contract: ServiceContract | None
    ) -> list[ServiceRecord]:
        host = self.host
        if host.mesh is None or host.stopped or host._loop is None:
            return []
        members = host._on_loop(self._members)
        on_loop = threading.current_thread() is host._loop_thread
        now_m = time.monotonic()
        now = time.time()
        chosen: list[list[ServiceRecord] | None] = []
        to_ask: list[tuple[int, _MemberView]] = []
        for view in members:
            asked = self._asked.get(view.host_id)
            if (
                asked is not None
                and asked.version >= view.version
                and now_m - asked.at <= self.stale_after
            ):
                chosen.append(asked.records)
                continue
            records = _from_digest(view)
            if view.age <= self.stale_after or on_loop:
                chosen.append(records)  # fresh (on the loop nothing may block: use as is)
                continue
            if any(_matches(r, name, capability, contract, now) for r in records):
                to_ask.append((len(chosen), view))
            chosen.append(None)  # nothing relevant, or replaced by the owner's answer
        if to_ask:
            for index, records in self._ask_owners(to_ask).items():
                chosen[index] = records
        out = []
        for records in chosen:
            if records:
                out.extend(r for r in records if _matches(r, name, capability, contract, now))
        return out

    def _ask_owners(self, views: list[tuple[int, _MemberView]]) -> dict[int, list[ServiceRecord]]:
        """Ask each owner for its records, all at once; wait at most `ask_timeout`."""
        host = self.host
        client = host.peer_client
        timeout = self.ask_timeout
        futures: dict[concurrent.futures.Future[Any], tuple[int, _MemberView]] = {}
        for index, view in views:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            futures[future] = (index, view)

            def job(
                view: _MemberView = view, future: concurrent.futures.Future[Any] = future
            ) -> None:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    future.set_result(
                        client.list_services(view.url, scope="local", timeout=timeout)
                    )
                except BaseException as exc:
                    future.set_exception(exc)

            try:
                host.pool.submit(job)
            except RuntimeError:
                future.cancel()  # the pool is closed: the host is stopping
        self.asks += len(futures)
        done, _pending = concurrent.futures.wait(futures, timeout=timeout + 0.5)
        answers: dict[int, list[ServiceRecord]] = {}
        for future in done:
            index, view = futures[future]
            if future.cancelled() or future.exception() is not None:
                log.debug("service owner %s did not answer: %s", view.url, future.exception())
                continue
            records = []
            for wire in future.result():
                try:
                    record = ServiceRecord.from_wire(wire)
                except ValueError:
                    continue
                if record.scope is ServiceScope.MESH:
                    records.append(record)
            self._asked[view.host_id] = _Asked(view.version, time.monotonic(), records)
            answers[index] = records
        return answers

    def forget_host(self, host_id: str) -> None:
        self._asked.pop(host_id, None)


def _matches(
    record: ServiceRecord,
    name: str | None,
    capability: str | None,
    contract: ServiceContract | None,
    now: float,
) -> bool:
    if name is not None and record.name != name:
        return False
    if capability is not None and capability not in record.capabilities:
        return False
    if record.expires_at is not None and now >= record.expires_at:
        return False
    return contract is None or contract.matches_record(record)


def _from_digest(view: _MemberView) -> list[ServiceRecord]:
    body = view.body
    rows = body.get("records") if isinstance(body, Mapping) else None
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        try:
            expires = row.get("x")
            out.append(
                ServiceRecord(
                    name=str(row["n"]),
                    proxy=PagletProxyRef(view.url, str(row["a"])),
                    capabilities=tuple(str(c) for c in row.get("c") or ()),
                    metadata=dict(row.get("m") or {}),
                    scope=ServiceScope.MESH,
                    host_name=view.name,
                    host_url=view.url,
                    advertised_at=float(row.get("t") or 0.0),
                    expires_at=None if expires is None else float(expires),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a malformed row from another version: skip it, keep the rest
    return out
