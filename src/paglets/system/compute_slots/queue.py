"""The scheduler's queue order (priority, aging, seniority) and its durable tables in the
host's `paglets.db` (jobs.md §2.1, §2.5).

Order: effective priority (high first), `first_submitted_at`, request id, where effective
priority = `priority + min(10, floor(waited / 900 s))` and "waited" runs from
`first_submitted_at`, which travels with the job through redirects and retries: a
re-request never loses its place. With `fair_share = "owner"`, owners holding fewer cores
here go first within equal priority.

Tables: `compute_queue`, `compute_leases`, `compute_holds`, `compute_usage`,
`compute_slips` (reservation slip records) and `job_history`. Each row is its key columns
plus the msgpack of the struct; the scheduler keeps the working set in memory and writes
through, one transaction per turn.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec

from paglets.persistence.store import Store

from .config import SchedulerConfig
from .models import (
    ComputeSlotRequest,
    Hold,
    JobHistoryRow,
    LeaseUsage,
    SlotLease,
)
from .planner import SlipRecord

__all__ = [
    "Loaded",
    "QueueOrder",
    "QueuedRequest",
    "SlotTables",
    "aging_boundary",
    "effective_priority",
    "order_queue",
]


class QueuedRequest:
    """A request waiting here. `queued_at` is when it entered this host's queue;
    `redirect_tried_at` when the scheduler last tried to move it."""

    __slots__ = ("queued_at", "redirect_tried_at", "request")

    def __init__(
        self, request: ComputeSlotRequest, queued_at: float, redirect_tried_at: float = 0.0
    ) -> None:
        self.request = request
        self.queued_at = queued_at
        self.redirect_tried_at = redirect_tried_at


def effective_priority(request: ComputeSlotRequest, now: float, config: SchedulerConfig) -> int:
    waited = max(0.0, now - request.first_submitted_at)
    boost = min(config.aging_max_boost, math.floor(waited / config.aging_interval_seconds))
    return request.priority + boost


def aging_boundary(request: ComputeSlotRequest, now: float, config: SchedulerConfig) -> float:
    """When `request`'s aging boost next rises (infinity once it is capped)."""
    interval = config.aging_interval_seconds
    steps = math.floor(max(0.0, now - request.first_submitted_at) / interval)
    if steps >= config.aging_max_boost:
        return math.inf
    return request.first_submitted_at + (steps + 1) * interval


def order_queue(
    entries: Iterable[QueuedRequest],
    now: float,
    config: SchedulerConfig,
    owner_cores: Mapping[str, int] | None = None,
) -> tuple[list[QueuedRequest], float]:
    """The entries in grant order, and until when that order holds without new entries
    (the next time an entry's aging boost rises)."""
    interval = config.aging_interval_seconds
    cap = config.aging_max_boost
    valid_until = math.inf
    keyed = []
    for e in entries:
        r = e.request
        waited = max(0.0, now - r.first_submitted_at)
        steps = math.floor(waited / interval)
        if steps < cap:
            valid_until = min(valid_until, r.first_submitted_at + (steps + 1) * interval)
        fair = owner_cores.get(r.owner, 0) if owner_cores is not None else 0
        keyed.append(
            ((-(r.priority + min(cap, steps)), fair, r.first_submitted_at, r.request_id), e)
        )
    keyed.sort(key=lambda pair: pair[0])
    return [e for _, e in keyed], valid_until


class QueueOrder:
    """The queue in grant order, cached: sorted once, then kept in step with each entry
    added or removed by a bisect (a long queue must not make every request cost a sort),
    until the next aging boundary reorders it. With fair share the order depends on the
    cores each owner holds, which change at every grant, so it is sorted on each use."""

    __slots__ = ("_cache", "config", "owner_cores")

    def __init__(
        self, config: SchedulerConfig, owner_cores: Callable[[], Mapping[str, int] | None]
    ) -> None:
        self.config = config
        self.owner_cores = owner_cores
        self._cache: tuple[list[QueuedRequest], list[tuple[Any, ...]], float] | None = None

    def invalidate(self) -> None:
        self._cache = None

    def key(self, request: ComputeSlotRequest, now: float) -> tuple[Any, ...]:
        owners = self.owner_cores()
        fair = owners.get(request.owner, 0) if owners is not None else 0
        prio = effective_priority(request, now, self.config)
        return (-prio, fair, request.first_submitted_at, request.request_id)

    def get(self, entries: Iterable[QueuedRequest], now: float) -> list[QueuedRequest]:
        cached = self._cache
        if cached is not None and now < cached[2] and self.config.fair_share != "owner":
            return cached[0]
        order, valid_until = order_queue(entries, now, self.config, self.owner_cores())
        self._cache = (order, [self.key(e.request, now) for e in order], valid_until)
        return order

    def position(self, request: ComputeSlotRequest, now: float) -> int:
        """Where `request` would go in the order last returned by `get` (0-based)."""
        keys = self._cache[1] if self._cache is not None else []
        return bisect_left(keys, self.key(request, now))

    def edit(self, entry: QueuedRequest, now: float, *, add: bool) -> None:
        cached = self._cache
        if cached is None or now >= cached[2] or self.config.fair_share == "owner":
            self._cache = None
            return
        order, keys, valid_until = cached
        key = self.key(entry.request, now)
        i = bisect_left(keys, key)
        if add:
            keys.insert(i, key)
            order.insert(i, entry)
            boundary = aging_boundary(entry.request, now, self.config)
            self._cache = (order, keys, min(valid_until, boundary))
        elif i < len(order) and order[i] is entry:
            del keys[i], order[i]
        else:
            self._cache = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS compute_queue (
    request_id TEXT PRIMARY KEY NOT NULL,
    agent_id TEXT NOT NULL,
    queued_at REAL NOT NULL,
    request BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS compute_leases (
    lease_id TEXT PRIMARY KEY NOT NULL,
    agent_id TEXT NOT NULL,
    lease BLOB NOT NULL,
    request BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS compute_holds (
    hold_id TEXT PRIMARY KEY NOT NULL,
    expires_at REAL NOT NULL,
    hold BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS compute_usage (
    lease_id TEXT PRIMARY KEY NOT NULL,
    usage BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS compute_slips (
    request_id TEXT PRIMARY KEY NOT NULL,
    prev_t_res REAL NOT NULL,
    total REAL NOT NULL,
    off INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS job_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    finished_at REAL NOT NULL,
    job_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    row BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS job_history_finished ON job_history(finished_at);
CREATE INDEX IF NOT EXISTS job_history_job ON job_history(job_id);
CREATE INDEX IF NOT EXISTS job_history_group ON job_history(group_id, finished_at);
"""


@dataclass(slots=True)
class Loaded:
    """Everything the scheduler keeps in memory, as read back from the tables."""

    entries: list[QueuedRequest] = field(default_factory=list)
    leases: list[tuple[SlotLease, ComputeSlotRequest]] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    usage: dict[str, LeaseUsage] = field(default_factory=dict)
    slips: dict[str, SlipRecord] = field(default_factory=dict)


class SlotTables:
    """The scheduler's durable tables, in the host's store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema(_SCHEMA)
        self._enc = msgspec.msgpack.Encoder()
        self._request = msgspec.msgpack.Decoder(ComputeSlotRequest)
        self._lease = msgspec.msgpack.Decoder(SlotLease)
        self._hold = msgspec.msgpack.Decoder(Hold)
        self._usage = msgspec.msgpack.Decoder(LeaseUsage)
        self._history = msgspec.msgpack.Decoder(JobHistoryRow)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.store.transaction():
            yield

    def load(self) -> Loaded:
        out = Loaded()
        q = self.store.query
        for _rid, queued_at, blob in q("SELECT request_id, queued_at, request FROM compute_queue"):
            out.entries.append(QueuedRequest(self._request.decode(blob), queued_at))
        for lease_blob, request_blob in q("SELECT lease, request FROM compute_leases"):
            out.leases.append((self._lease.decode(lease_blob), self._request.decode(request_blob)))
        out.holds = [self._hold.decode(b) for (b,) in q("SELECT hold FROM compute_holds")]
        for lease_id, blob in q("SELECT lease_id, usage FROM compute_usage"):
            out.usage[lease_id] = self._usage.decode(blob)
        for rid, prev, total, off in q(
            "SELECT request_id, prev_t_res, total, off FROM compute_slips"
        ):
            out.slips[rid] = SlipRecord(prev, total, bool(off), dirty=False)
        return out

    # -- queue -----------------------------------------------------------------------------

    def put_entry(self, entry: QueuedRequest) -> None:
        r = entry.request
        self.store.execute(
            "INSERT INTO compute_queue (request_id, agent_id, queued_at, request) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(request_id) DO UPDATE SET "
            "agent_id = excluded.agent_id, queued_at = excluded.queued_at, "
            "request = excluded.request",
            (r.request_id, r.agent_id, entry.queued_at, self._enc.encode(r)),
        )

    def delete_entry(self, request_id: str) -> None:
        self.store.execute("DELETE FROM compute_queue WHERE request_id = ?", (request_id,))
        self.store.execute("DELETE FROM compute_slips WHERE request_id = ?", (request_id,))

    # -- leases, holds, usage --------------------------------------------------------------

    def put_lease(self, lease: SlotLease, request: ComputeSlotRequest) -> None:
        self.store.execute(
            "INSERT INTO compute_leases (lease_id, agent_id, lease, request) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(lease_id) DO UPDATE SET lease = excluded.lease",
            (lease.lease_id, lease.agent_id, self._enc.encode(lease), self._enc.encode(request)),
        )

    def delete_lease(self, lease_id: str) -> None:
        self.store.execute("DELETE FROM compute_leases WHERE lease_id = ?", (lease_id,))
        self.store.execute("DELETE FROM compute_usage WHERE lease_id = ?", (lease_id,))

    def put_hold(self, hold: Hold) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO compute_holds (hold_id, expires_at, hold) VALUES (?, ?, ?)",
            (hold.hold_id, hold.expires_at, self._enc.encode(hold)),
        )

    def delete_hold(self, hold_id: str) -> None:
        self.store.execute("DELETE FROM compute_holds WHERE hold_id = ?", (hold_id,))

    def put_usage(self, lease_id: str, usage: LeaseUsage) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO compute_usage (lease_id, usage) VALUES (?, ?)",
            (lease_id, self._enc.encode(usage)),
        )

    def put_slip(self, request_id: str, rec: SlipRecord) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO compute_slips (request_id, prev_t_res, total, off) "
            "VALUES (?, ?, ?, ?)",
            (request_id, rec.prev_t_res, rec.total, int(rec.off)),
        )

    # -- history ---------------------------------------------------------------------------

    def add_history(self, row: JobHistoryRow) -> None:
        self.store.execute(
            "INSERT INTO job_history (finished_at, job_id, group_id, row) VALUES (?, ?, ?, ?)",
            (row.finished_at, row.job_id, row.group_id, self._enc.encode(row)),
        )

    def history(
        self,
        *,
        limit: int = 50,
        since: float | None = None,
        group_id: str | None = None,
        job_id: str | None = None,
    ) -> list[JobHistoryRow]:
        """Newest first."""
        where, params = [], []
        if since is not None:
            where.append("finished_at >= ?")
            params.append(since)
        if group_id is not None:
            where.append("group_id = ?")
            params.append(group_id)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        sql = "SELECT row FROM job_history"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(max(0, int(limit)))
        return [self._history.decode(b) for (b,) in self.store.query(sql, params)]

    def prune_history(self, *, before: float, keep_max: int) -> int:
        """Drop rows older than `before` and all but the newest `keep_max`."""
        with self.store.transaction():
            n = self.store.execute("DELETE FROM job_history WHERE finished_at < ?", (before,))
            n += self.store.execute(
                "DELETE FROM job_history WHERE seq <= "
                "(SELECT seq FROM job_history ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (max(0, keep_max),),
            )
        return n
