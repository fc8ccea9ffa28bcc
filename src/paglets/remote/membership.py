"""The member table: who is in the mesh, in which state, as this host sees it.

network.md §3.1-3.3 and §3.6. Pure data and rules, no I/O and no timers: the SWIM node
(`swim.py`) feeds it updates and direct contacts and reads the answers. Every time in here is
this host's own clock (`now`), never a remote one.

Precedence is SWIM's: `alive(i)` beats `suspect/dead(j)` if `i > j`; `suspect(i)` beats
`alive(j)` if `i >= j`; `dead(i)`/`left(i)` beat `alive/suspect(j)` if `i >= j`. All of it is
one order, (incarnation, alive < suspect < dead < left), and a member's state only ever rises
in it, so hosts that saw the same updates in any order agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from paglets.core.errors import HostError
from paglets.remote.host_summary import LoadSummary, resources_view
from paglets.remote.mesh import HostRef
from paglets.remote.mesh_wire import (
    ALIVE,
    DEAD,
    LEFT,
    PROTOCOL,
    SUSPECT,
    DigestEntry,
    Identity,
    MemberRecord,
    Update,
)

__all__ = [
    "INCOMPATIBLE",
    "Change",
    "Member",
    "MemberTable",
    "StoredSummary",
    "VersionGate",
    "describe",
    "host_ref",
    "newer",
]

INCOMPATIBLE = "incompatible"
_RANK = {ALIVE: 0, SUSPECT: 1, DEAD: 2, LEFT: 3}
_HASH_MASK = (1 << 63) - 1  # table hashes travel as msgpack int64


class StoredSummary:
    """One member's summary of one kind, as last received (`received_at`: local clock)."""

    __slots__ = ("body", "received_at", "size", "version")

    def __init__(self, version: int, body: dict[str, Any], size: int, received_at: float) -> None:
        self.version = version
        self.body = body
        self.size = size
        self.received_at = received_at


class Member:
    """One other host. Mutable, owned by its `MemberTable`; read it, change it through the table."""

    __slots__ = (
        "announced",
        "host_id",
        "incarnation",
        "incompatible_reason",
        "last_heard",
        "liveness",
        "name_conflict",
        "partial",
        "record",
        "rtt_ms",
        "since",
        "summaries",
        "suspicion",
    )

    def __init__(self, record: MemberRecord, liveness: str, incarnation: int, now: float) -> None:
        self.host_id = record.host_id
        self.record = record
        self.liveness = liveness
        self.incarnation = incarnation
        self.since = now  # when `liveness` last changed
        self.last_heard = now  # last direct contact or accepted alive news
        self.incompatible_reason: str | None = None
        self.name_conflict = False
        self.partial = False  # known from a frame's `from` only: tags, properties still to come
        self.rtt_ms: float | None = None
        self.summaries: dict[str, StoredSummary] = {}
        self.announced = 0  # newest summary version the member itself said it has
        self.suspicion: Any = None  # the node's timer state while `suspect`

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def url(self) -> str:
        return self.record.url

    @property
    def status(self) -> str:
        """alive|suspect|dead|left, or incompatible (then `liveness` keeps the real one)."""
        if self.incompatible_reason is not None and self.liveness != LEFT:
            return INCOMPATIBLE
        return self.liveness

    @property
    def is_target(self) -> bool:
        """Usable for placement: alive, same version, not draining (network.md §3.6)."""
        return (
            self.liveness == ALIVE and self.incompatible_reason is None and not self.record.draining
        )

    def __repr__(self) -> str:
        return f"Member({self.name!r}, {self.host_id[:8]}, {self.status}, inc={self.incarnation})"


class Change:
    """What one update or contact did to the table: `previous` is None for a new member."""

    __slots__ = ("member", "previous")

    def __init__(self, member: Member, previous: str | None) -> None:
        self.member = member
        self.previous = previous


class VersionGate:
    """The code-version gate (network.md §3.6): members that differ are listed, never targets.
    The reason names both values so the user sees what to align."""

    __slots__ = ("code_version", "prefix", "protocol", "scheme")

    def __init__(self, code_version: str, url: str, protocol: int = PROTOCOL) -> None:
        self.code_version = code_version
        self.protocol = protocol
        self.scheme = urlsplit(url).scheme
        self.prefix = f"{self.scheme}://"

    def reason(self, record: MemberRecord) -> str | None:
        if record.protocol != self.protocol:
            return (
                f"wire protocol {record.protocol} differs from this host's {self.protocol}; "
                "run the same paglets release on both"
            )
        if record.code_version != self.code_version:
            return (
                f"code_version {record.code_version!r} differs from this host's "
                f"{self.code_version!r}; start both with the same --mesh-version"
            )
        if not record.url.startswith(self.prefix):
            scheme = urlsplit(record.url).scheme
            return (
                f"URL scheme {scheme!r} differs from this host's {self.scheme!r}; "
                "use TLS on every host of the mesh or on none"
            )
        return None


def newer(inc_a: int, status_a: str, inc_b: int, status_b: str) -> bool:
    """Whether state a supersedes state b in the precedence order."""
    if inc_a != inc_b:
        return inc_a > inc_b
    return _RANK.get(status_a, 0) > _RANK.get(status_b, 0)


def _member_hash(host_id: str, incarnation: int, liveness: str) -> int:
    # Suspicion is transient and seen at different times; for anti-entropy it counts as alive.
    state = "a" if liveness in (ALIVE, SUSPECT) else liveness[0]
    digest = hashlib.blake2b(f"{host_id}:{incarnation}:{state}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _HASH_MASK


class MemberTable:
    """Every other member this host knows, with the name index and the version gate.

    The local host is not a member of its own table (`local` holds its record); `table_hash`
    covers both, so two hosts with the same view have the same hash.
    """

    def __init__(self, local: MemberRecord, gate: VersionGate | None = None) -> None:
        self.local = local
        self.gate = gate or VersionGate(local.code_version, local.url, local.protocol)
        self.members: dict[str, Member] = {}
        self.live_count = 0  # members alive or suspect
        self.alive_count = 0  # members alive (incompatible ones included)
        self._by_name: dict[str, set[str]] = {}
        self._parting: dict[str, Member] = {}  # dead, left or incompatible: candidates to forget
        self._hash = _member_hash(local.host_id, local.incarnation, ALIVE)

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members.values())

    def get(self, host_id: str) -> Member | None:
        return self.members.get(host_id)

    def named(self, name: str) -> list[Member]:
        return [self.members[h] for h in self._by_name.get(name, ())]

    @property
    def table_hash(self) -> int:
        return self._hash

    def digest(self) -> list[DigestEntry]:
        local = self.local
        entries = [DigestEntry(m.host_id, m.incarnation, m.liveness) for m in self.members.values()]
        entries.append(DigestEntry(local.host_id, local.incarnation, ALIVE))
        return entries

    def holder_of(self, name: str, host_id: str) -> Member | None:
        """Another alive or suspect host id that holds `name` (a join by `host_id` is refused)."""
        for other in self.named(name):
            if other.host_id != host_id and other.liveness in (ALIVE, SUSPECT):
                return other
        return None

    def compatible_alive(self) -> list[Member]:
        return [m for m in self.members.values() if m.is_target]

    def resolve(self, name: str) -> str:
        """The URL of the alive member called `name` (this host's own name included).

        Raises `HostError` naming what is wrong: no such member, several (a name conflict,
        both URLs listed), or one that is not a usable target (its status and reason).
        """
        if name == self.local.name:
            clash = [m for m in self.named(name) if m.liveness in (ALIVE, SUSPECT)]
            if not clash:
                return self.local.url
            urls = ", ".join([self.local.url, *(m.url for m in clash)])
            raise HostError(
                f"host name {name!r} is held by several hosts ({urls}); give each host a "
                "unique --name",
                code="name-conflict",
            )
        found = [m for m in self.named(name) if m.liveness != LEFT]
        live = [m for m in found if m.liveness in (ALIVE, SUSPECT)]
        if len(live) > 1:
            urls = ", ".join(m.url for m in live)
            raise HostError(
                f"host name {name!r} is held by several hosts ({urls}); give each host a "
                "unique --name",
                code="name-conflict",
            )
        if not found:
            raise HostError(
                f"no host named {name!r} in this host's mesh view; check the name with "
                "`paglets mesh hosts`",
                code="unknown-host",
            )
        member = live[0] if live else found[0]
        if member.incompatible_reason is not None:
            raise HostError(
                f"host {name!r} ({member.url}) is incompatible: {member.incompatible_reason}",
                code="incompatible",
            )
        if member.liveness != ALIVE:
            raise HostError(
                f"host {name!r} ({member.url}) is {member.liveness} in this host's mesh view",
                code="unreachable",
            )
        if member.record.draining:
            raise HostError(
                f"host {name!r} ({member.url}) is draining and takes no new paglets",
                code="draining",
            )
        return member.url

    # -- changing ----------------------------------------------------------------------------

    def set_local(self, record: MemberRecord) -> None:
        """The local host's record changed (a new incarnation, labels, URL)."""
        old = self.local
        self._hash = (
            self._hash
            - _member_hash(old.host_id, old.incarnation, ALIVE)
            + _member_hash(record.host_id, record.incarnation, ALIVE)
        ) & _HASH_MASK
        self.local = record
        if old.name != record.name:
            self._check_names(old.name)
        self._check_names(record.name)

    def apply(self, update: Update, now: float) -> Change | None:
        """Apply one gossiped update about another host. None: old news, or nothing to attach
        it to (a suspicion about a host never heard of)."""
        member = self.members.get(update.host_id)
        kind, inc = update.type, update.incarnation
        if member is None:
            if update.record is None or kind not in (ALIVE, SUSPECT, DEAD, LEFT):
                return None
            return self._add(update.record, kind, inc, now)
        rank = _RANK.get(kind)
        if rank is None:
            return None
        known = member.incarnation
        newer = inc > known or (inc == known and rank > _RANK[member.liveness])
        fills_in = kind == ALIVE and inc == known and member.partial and update.record is not None
        if newer:
            return self._set(member, kind, inc, update.record, now)
        if fills_in:  # the full record of a member known from a frame's `from` only
            return self._set(member, member.liveness, inc, update.record, now)
        return None

    def heard(self, sender: Identity, now: float) -> Change | None:
        """A frame came straight from `sender`: it is alive at that incarnation at least.

        An unknown sender is added as `partial` (its tags and properties follow by gossip or a
        pull); a higher incarnation is taken as alive, with the identity's name, URL, version.
        """
        member = self.members.get(sender.host_id)
        if member is None:
            record = MemberRecord(
                sender.host_id,
                sender.name,
                sender.url,
                sender.incarnation,
                code_version=sender.code_version,
                spec_version=sender.spec_version,
            )
            change = self._add(record, ALIVE, sender.incarnation, now)
            change.member.partial = True
            change.member.announced = sender.summary_version
            return change
        member.last_heard = now
        if sender.summary_version > member.announced:
            member.announced = sender.summary_version
        if sender.incarnation <= member.incarnation:
            return None
        old = member.record
        record = MemberRecord(
            old.host_id,
            sender.name,
            sender.url,
            sender.incarnation,
            old.protocol,
            sender.code_version,
            old.paglets_version,
            old.tags,
            old.properties,
            old.capabilities,
            old.relay_via,
            old.auto_update_from_git,
            old.git_head,
            old.draining,
            sender.spec_version,
        )
        change = self._set(member, ALIVE, sender.incarnation, record, now)
        # The frame's `from` carries no tags, properties or flags: the record gossiped at
        # this incarnation (which may change them) must still be taken in.
        member.partial = True
        return change

    def remove(self, host_id: str) -> Member | None:
        member = self.members.pop(host_id, None)
        if member is None:
            return None
        self._count(member.liveness, -1)
        self._hash = (
            self._hash - _member_hash(host_id, member.incarnation, member.liveness)
        ) & _HASH_MASK
        self._parting.pop(host_id, None)
        names = self._by_name.get(member.name)
        if names is not None:
            names.discard(host_id)
            if not names:
                del self._by_name[member.name]
        self._check_names(member.name)
        return member

    def forget(
        self, now: float, *, dead_after: float, left_after: float, incompatible_after: float
    ) -> list[Member]:
        """Drop dead, left and incompatible members quiet for long enough (network.md §3.5)."""
        gone = []
        for member in list(self._parting.values()):
            if member.liveness == DEAD:
                due = now - member.since >= dead_after
            elif member.liveness == LEFT:
                due = now - member.since >= left_after
            else:
                due = False
            if member.incompatible_reason is not None:
                due = due or now - member.last_heard >= incompatible_after
            if due:
                self.remove(member.host_id)
                gone.append(member)
        return gone

    # -- inside --------------------------------------------------------------------------------

    def _add(self, record: MemberRecord, liveness: str, inc: int, now: float) -> Change:
        member = Member(record, liveness, inc, now)
        self.members[record.host_id] = member
        self._count(liveness, 1)
        self._hash = (self._hash + _member_hash(record.host_id, inc, liveness)) & _HASH_MASK
        self._by_name.setdefault(record.name, set()).add(record.host_id)
        member.incompatible_reason = self.gate.reason(record)
        self._track_parting(member)
        self._check_names(record.name)
        return Change(member, None)

    def _set(
        self, member: Member, liveness: str, inc: int, record: MemberRecord | None, now: float
    ) -> Change:
        previous = member.liveness
        self._hash = (
            self._hash
            - _member_hash(member.host_id, member.incarnation, previous)
            + _member_hash(member.host_id, inc, liveness)
        ) & _HASH_MASK
        if previous != liveness:
            self._count(previous, -1)
            self._count(liveness, 1)
            member.since = now
        member.liveness = liveness
        member.incarnation = inc
        if liveness == ALIVE:
            member.last_heard = now
        old_name = member.name
        if record is not None:
            member.partial = False
            if record != member.record:
                member.record = record
                member.incompatible_reason = self.gate.reason(record)
                if record.name != old_name:
                    names = self._by_name.get(old_name)
                    if names is not None:
                        names.discard(member.host_id)
                        if not names:
                            del self._by_name[old_name]
                    self._by_name.setdefault(record.name, set()).add(member.host_id)
                    self._check_names(old_name)
        self._track_parting(member)
        if previous != liveness or record is not None:
            self._check_names(member.name)
        return Change(member, previous)

    def _count(self, liveness: str, delta: int) -> None:
        if liveness == ALIVE:
            self.alive_count += delta
            self.live_count += delta
        elif liveness == SUSPECT:
            self.live_count += delta

    def _track_parting(self, member: Member) -> None:
        if member.liveness in (DEAD, LEFT) or member.incompatible_reason is not None:
            self._parting[member.host_id] = member
        else:
            self._parting.pop(member.host_id, None)

    def _check_names(self, name: str) -> None:
        """Flag every live holder of `name` when there are several (a healed partition)."""
        ids = self._by_name.get(name)
        if not ids:
            return
        if len(ids) == 1 and self.local.name != name:
            for host_id in ids:
                self.members[host_id].name_conflict = False
            return
        holders = [self.members[h] for h in ids]
        live = [m for m in holders if m.liveness in (ALIVE, SUSPECT)]
        clash = len(live) + (1 if self.local.name == name else 0) > 1
        for member in holders:
            member.name_conflict = clash and member in live

    @property
    def local_name_conflict(self) -> bool:
        return any(m.liveness in (ALIVE, SUSPECT) for m in self.named(self.local.name))


def describe(member: Member, now: float) -> dict[str, Any]:
    """The member record of network.md §3.2 as `/mesh/members` and `paglets mesh hosts` show
    it: ages on this host's clock, `resources` the member's spec and load summaries."""
    record = member.record
    load = member.summaries.get("load")
    spec = member.summaries.get("spec")
    spec_body = spec.body if spec is not None else None
    view = resources_view(spec_body, load.body if load is not None else None)
    return {
        "host_id": record.host_id,
        "name": record.name,
        "url": record.url,
        "incarnation": member.incarnation,
        "status": member.status,
        "liveness": member.liveness,
        "status_age_s": round(now - member.since, 3),
        "protocol": record.protocol,
        "code_version": record.code_version,
        "paglets_version": record.paglets_version,
        "tags": list(record.tags),
        "properties": dict(record.properties),
        "capabilities": list(record.capabilities),
        "relay_via": record.relay_via,
        "auto_update_from_git": record.auto_update_from_git,
        "git_head": record.git_head,
        "draining": record.draining,
        "active_count": view.get("active_count", 0),
        "inactive_count": view.get("inactive_count", 0),
        "incompatible_reason": member.incompatible_reason,
        "name_conflict": member.name_conflict,
        "resources": {
            "spec": spec_body,
            "spec_version": record.spec_version,
            # The load with jobs.md's names (the wire's short keys decoded).
            "load": _load_part(view) if load is not None else None,
            "load_age_s": round(now - load.received_at, 3) if load is not None else None,
        },
        "rtt_ms": member.rtt_ms,
        "last_heard_age_s": round(now - member.last_heard, 3),
    }


def _load_part(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k in _LOAD_FIELDS}


_LOAD_FIELDS = frozenset(LoadSummary.__dataclass_fields__)


def host_ref(
    member: Member | None,
    now: float,
    wall_now: float,
    *,
    local: MemberRecord | None = None,
    counts: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    load: dict[str, Any] | None = None,
) -> HostRef:
    """The API's `HostRef` for a member (or, with `local`, for this host: `spec` and `load`
    are its own summary bodies, `counts` exact `active_count`/`inactive_count`).
    `last_seen` is this host's receive time turned into wall-clock seconds; no remote
    clock is involved. `resources` is the host summary with jobs.md's names
    (`host_summary.resources_view`)."""
    if member is None:
        assert local is not None
        record, status, last_seen, error = local, ALIVE, wall_now, None
        incarnation = local.incarnation
        resources: dict[str, Any] = resources_view(
            spec, load, spec_version=local.spec_version or None
        )
        resources.update(counts or {})
    else:
        record, status = member.record, member.status
        last_seen = wall_now - (now - member.last_heard)
        error = member.incompatible_reason
        if error is None and member.liveness != ALIVE:
            error = f"{member.liveness} for {now - member.since:.1f}s"
        if error is None and member.name_conflict:
            error = f"name {record.name!r} is held by several hosts"
        incarnation = member.incarnation
        load_summary = member.summaries.get("load")
        spec_summary = member.summaries.get("spec")
        resources = resources_view(
            spec_summary.body if spec_summary is not None else None,
            load_summary.body if load_summary is not None else None,
            spec_version=record.spec_version or None,
            load_age_s=None if load_summary is None else now - load_summary.received_at,
        )
    return HostRef(
        name=record.name,
        url=record.url,
        code_version=record.code_version or None,
        online=status == ALIVE,
        last_seen=last_seen,
        active_count=int(resources.get("active_count", 0)),
        inactive_count=int(resources.get("inactive_count", 0)),
        tags=list(record.tags),
        properties=dict(record.properties),
        error=error,
        host_id=record.host_id,
        incarnation=incarnation,
        status=status,
        capabilities=list(record.capabilities),
        resources=resources,
    )
