"""The `compute-slots` scheduler of one host (jobs.md §2): admission, leases, holds, the
grant pass, walltime and memory stops, cancel, vanished requests and usage.

**One writer.** `ComputeSlotsAgent` calls these methods from its mailbox, one at a time;
the scheduler has no lock and no thread. Each call that changes anything is one *turn*:
evaluate and reserve in memory, write through to SQLite in one transaction, commit, and
only then run its effects (deliver grants, stop processes, tell cancelled jobs) through
`SchedulerHooks`. A turn that fails reloads the state from the tables, so memory never
disagrees with what was committed. No turn waits on the network: redirects are planned
here and asked for by the agent; the answers come back as calls.

Time comes from the injected `clock` (wall-clock seconds: timestamps outlive restarts).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec

from paglets.persistence.store import Store
from paglets.system.placement import HostSummary

from . import admission, enforcement, redirects, views
from .accounting import Pool, Release, build_pool, effective_walltime, lease_releases
from .config import SchedulerConfig
from .hooks import LeaseRecord, SchedulerHooks, TickReport
from .inputs import GpuSpec, HostCapacity, HostPolicy, MeasuredLoad
from .models import (
    LEASE_GRANTED,
    LEASE_RUNNING,
    RELEASE_REASONS,
    CancelSlotRequestsReply,
    CancelSlotRequestsRequest,
    ComputeSlotRequest,
    ExplainWaitReply,
    ExplainWaitRequest,
    Hold,
    JobHistoryRow,
    LeaseUsage,
    SchedulerHostStatus,
    SchedulerStatusReply,
    SchedulerStatusRequest,
    SlotDecisionReply,
    SlotLease,
    SlotReleaseReply,
    SlotReleaseRequest,
    UsageSample,
    WaitExplanation,
)
from .planner import PassOutcome, TokenBucket, grant_pass
from .queue import QueuedRequest, QueueOrder, SlotTables
from .records import fold_usage, history_row, new_id
from .redirects import RedirectBook, RedirectOrder, RedirectPlan

__all__ = ["ComputeSlotsScheduler", "SchedulerHooks", "TickReport"]

_log = logging.getLogger(__name__)
_replace = msgspec.structs.replace


class ComputeSlotsScheduler:
    """One host's scheduler. Not thread-safe by design: its agent's mailbox serializes."""

    def __init__(
        self,
        store: Store,
        capacity: HostCapacity,
        *,
        policy: HostPolicy | None = None,
        config: SchedulerConfig | None = None,
        hooks: SchedulerHooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.capacity = capacity
        self.policy = policy or HostPolicy()
        self.config = config or SchedulerConfig()
        self.hooks = hooks or SchedulerHooks()
        self.clock = clock
        self.load = MeasuredLoad()
        self.accepting = True
        self.tables = SlotTables(store)
        self._bucket = TokenBucket(
            self.config.burst_for(capacity.job_cores), self.config.start_rate_per_second, clock()
        )
        self._effects: list[Callable[[], None]] = []
        self._outcome: PassOutcome | None = None
        self._outcome_at = float("-inf")
        self._pruned_at = float("-inf")
        self.book = RedirectBook()
        # Since this process started, for /metrics (metrics.py): grants made and stays
        # ended, by finish reason. Plain integers; a rolled-back turn may count once more.
        self.granted_total = 0
        self.finished_total: dict[str, int] = {}
        self._load()

    # -- state -------------------------------------------------------------------------

    def _load(self) -> None:
        data = self.tables.load()
        self._entries: dict[str, QueuedRequest] = {e.request.request_id: e for e in data.entries}
        self._agent_entry = {e.request.agent_id: rid for rid, e in self._entries.items()}
        self._leases: dict[str, LeaseRecord] = {
            lease.lease_id: LeaseRecord(lease, req, data.usage.get(lease.lease_id) or LeaseUsage())
            for lease, req in data.leases
        }
        self._holds: dict[str, Hold] = {h.hold_id: h for h in data.holds}
        self._slips = data.slips
        self._order = QueueOrder(self.config, self._owner_cores)

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """One transaction; effects run after it commits, never inside it."""
        outer = self._effects
        self._effects = []
        try:
            with self.tables.transaction():
                yield
        except BaseException:
            self._effects = outer
            self._load()
            raise
        effects, self._effects = self._effects, outer
        for effect in effects:
            try:
                effect()
            except Exception:  # a hook's failure must not undo a committed turn
                _log.exception("compute-slots: a scheduler hook failed")

    def _add_entry(self, entry: QueuedRequest) -> None:
        rid = entry.request.request_id
        replaced = self._entries.get(rid)
        if replaced is not None:
            self._order.edit(replaced, self.clock(), add=False)
        self._entries[rid] = entry
        self._agent_entry[entry.request.agent_id] = rid
        self.tables.put_entry(entry)
        self._order.edit(entry, self.clock(), add=True)

    def _drop_entry(self, request_id: str) -> QueuedRequest | None:
        entry = self._entries.pop(request_id, None)
        if entry is not None:
            if self._agent_entry.get(entry.request.agent_id) == request_id:
                del self._agent_entry[entry.request.agent_id]
            self._slips.pop(request_id, None)
            self.tables.delete_entry(request_id)
            self._order.edit(entry, self.clock(), add=False)
        return entry

    def _entry_for(self, request: ComputeSlotRequest) -> QueuedRequest | None:
        entry = self._entries.get(request.request_id)
        if entry is None:
            rid = self._agent_entry.get(request.agent_id)
            entry = self._entries.get(rid) if rid is not None else None
        return entry

    def _lease_for(self, request: ComputeSlotRequest) -> LeaseRecord | None:
        for rec in self._leases.values():
            lease = rec.lease
            if request.request_id == lease.request_id or request.agent_id == lease.agent_id:
                return rec
            if request.job_id == lease.job_id:
                return rec
        return None

    def _put_lease(self, rec: LeaseRecord, lease: SlotLease) -> SlotLease:
        rec.lease = lease
        self.tables.put_lease(lease, rec.request)
        return lease

    def walltime_of(self, request: ComputeSlotRequest) -> float:
        return effective_walltime(request, self.policy, self.config)

    # -- inputs ------------------------------------------------------------------------

    def observe_load(self, load: MeasuredLoad) -> None:
        self.load = load

    def set_capacity(self, capacity: HostCapacity, policy: HostPolicy | None = None) -> None:
        self.capacity = capacity
        if policy is not None:
            self.policy = policy
        self._bucket.burst = float(self.config.burst_for(capacity.job_cores))

    def set_accepting(self, accepting: bool) -> None:
        """False while draining: no new admission, the whole queue may be redirected."""
        self.accepting = accepting

    # -- order and the grant pass ------------------------------------------------------

    def _owner_cores(self) -> dict[str, int] | None:
        if self.config.fair_share != "owner":
            return None
        held: dict[str, int] = {}
        for rec in self._leases.values():
            held[rec.request.owner] = held.get(rec.request.owner, 0) + rec.lease.cpu_cores
        return held

    def ordered(self, now: float) -> list[QueuedRequest]:
        """The queue in grant order (the cached list: do not mutate it)."""
        return self._order.get(self._entries.values(), now)

    def pool(self, *, with_holds: bool = True) -> Pool:
        usage = {lid: rec.usage for lid, rec in self._leases.items()}
        return build_pool(
            self.capacity,
            self.load,
            self.config,
            (rec.lease for rec in self._leases.values()),
            self._holds.values() if with_holds else (),
            usage,
        )

    def releases(self, now: float) -> list[Release]:
        """Bound ends of leases and holds, soonest first; an overdue bound counts as now."""
        return lease_releases(
            [(rec.lease, rec.usage) for rec in self._leases.values()],
            self._holds.values(),
            self.capacity.gpus,
            self.walltime_of,
            now,
        )

    def _run_pass(
        self, now: float, *, extra: ComputeSlotRequest | None = None, dry: bool = False
    ) -> PassOutcome:
        order = [e.request for e in self.ordered(now)]
        if extra is not None:
            order.insert(self._order.position(extra, now), extra)
        bucket = copy.copy(self._bucket) if dry else self._bucket
        slips = {k: copy.copy(v) for k, v in self._slips.items()} if dry else self._slips
        return grant_pass(
            order,
            self.pool(),
            self.releases(now),
            bucket,
            now,
            walltime_of=self.walltime_of,
            depth=self.config.reservation_depth,
            max_slip=self.config.max_reservation_slip_seconds,
            slips=slips,
            numa_nodes=self.capacity.numa_nodes,
        )

    def _pass(
        self, now: float, *, requester: str = "", extra: ComputeSlotRequest | None = None
    ) -> tuple[PassOutcome, list[SlotLease]]:
        """The grant pass, applied: leases for the grants, deliveries queued as effects."""
        outcome = self._run_pass(now, extra=extra)
        granted: list[SlotLease] = []
        for g in outcome.grants:
            if g.request is extra:
                continue  # the caller turns it into a hold
            r = g.request
            entry = self._drop_entry(r.request_id)
            lease = self._new_lease(
                r,
                g.cpu_ids,
                g.gpus,
                queued_at=entry.queued_at if entry is not None else now,
                now=now,
            )
            granted.append(lease)
            if r.request_id != requester:
                self._effects.append(lambda lid=lease.lease_id: self._deliver(lid))
        for rid, rec in self._slips.items():
            if rec.dirty and rid in self._entries:
                self.tables.put_slip(rid, rec)
                rec.dirty = False
        self._outcome, self._outcome_at = outcome, now
        return outcome, granted

    def _new_lease(
        self,
        r: ComputeSlotRequest,
        cpu_ids: tuple[int, ...],
        gpus: tuple[GpuSpec, ...],
        *,
        queued_at: float,
        now: float,
        hold_id: str = "",
    ) -> SlotLease:
        """A GRANTED lease for `r`, stored; the process must start by the deadline."""
        lease = SlotLease(
            lease_id=new_id("lease"),
            request_id=r.request_id,
            job_id=r.job_id,
            agent_id=r.agent_id,
            host_id=self.policy.host_id,
            status=LEASE_GRANTED,
            cpu_cores=r.cpu_cores,
            cpu_core_ids=cpu_ids,
            gpu_ids=tuple(x.uuid for x in gpus),
            gpu_indices=tuple(x.index for x in gpus),
            memory_bytes=r.memory_bytes,
            temp_storage_bytes=r.temp_storage_bytes,
            walltime_seconds=self.walltime_of(r),
            estimated_runtime_seconds=r.estimated_runtime_seconds,
            cpu_affinity_supported=self.capacity.cpu_affinity_supported,
            queued_at=queued_at,
            granted_at=now,
            expires_at=now + self.config.start_deadline_seconds,
            hold_id=hold_id,
        )
        self._leases[lease.lease_id] = LeaseRecord(lease, r, LeaseUsage())
        self.tables.put_lease(lease, r)
        self.granted_total += 1
        return lease

    def _deliver(self, lease_id: str) -> None:
        rec = self._leases.get(lease_id)
        if rec is None or rec.lease.status != LEASE_GRANTED:
            return
        try:
            failure = self.hooks.deliver_grant(rec.lease, rec.request)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        if failure is None:
            return
        reason = "vanished" if failure == "vanished" else "activation-failed"
        if reason != "vanished":
            self.hooks.event(
                "compute-activation-failed",
                {"job_id": rec.lease.job_id, "class": rec.request.agent_class, "error": failure},
            )
        now = self.clock()
        with self._turn():  # roll back and let the next request have the resources
            self._close(rec, reason, now, error="" if reason == "vanished" else failure)
            self._bucket.give_back()
            self._pass(now)

    def _close(
        self,
        rec: LeaseRecord,
        reason: str,
        now: float,
        *,
        exit_code: int | None = None,
        error: str = "",
    ) -> JobHistoryRow:
        lease = rec.lease
        finish = reason
        if lease.stop_reason and not (reason == "released" and exit_code in (0, None)):
            finish = lease.stop_reason
        row = history_row(
            rec.request,
            reason=finish,
            now=now,
            host_id=self.policy.host_id,
            host_name=self.policy.host_name,
            queued_at=lease.queued_at,
            lease=lease,
            usage=rec.usage,
            exit_code=exit_code,
            error=error,
        )
        self._leases.pop(lease.lease_id, None)
        self.tables.delete_lease(lease.lease_id)
        self.tables.add_history(row)
        self.finished_total[finish] = self.finished_total.get(finish, 0) + 1
        return row

    def _end_entry(self, entry: QueuedRequest, reason: str, now: float) -> JobHistoryRow:
        self._drop_entry(entry.request.request_id)
        row = history_row(
            entry.request,
            reason=reason,
            now=now,
            host_id=self.policy.host_id,
            host_name=self.policy.host_name,
            queued_at=entry.queued_at,
        )
        self.tables.add_history(row)
        self.finished_total[reason] = self.finished_total.get(reason, 0) + 1
        return row

    # -- request_slot ----------------------------------------------------------------------

    def request_slot(self, request: ComputeSlotRequest) -> SlotDecisionReply:
        """Admission (jobs.md §2.2): run_now, sleep (queued), redirect or rejected."""
        return admission.request_slot(self, request)

    # -- leases ----------------------------------------------------------------------------

    def mark_started(self, lease_id: str, pid: int, pid_started_at: float = 0.0) -> SlotLease:
        """The job process runs: GRANTED -> RUNNING, the TTL starts."""
        now = self.clock()
        rec = self._leases.get(lease_id)
        if rec is None:
            raise KeyError(
                f"no lease {lease_id!r} on this host (it expired or was released); request a "
                "slot again"
            )
        if rec.lease.status == LEASE_RUNNING and rec.lease.pid == pid:
            return rec.lease  # a repeated report
        with self._turn():
            return self._put_lease(
                rec,
                _replace(
                    rec.lease,
                    status=LEASE_RUNNING,
                    started_at=now,
                    pid=pid,
                    pid_started_at=pid_started_at,
                    expires_at=now + self.config.lease_ttl_seconds,
                ),
            )

    def renew_lease(self, lease_id: str) -> SlotLease | None:
        """The supervisor's heartbeat (every 20 s); None if the lease is gone."""
        rec = self._leases.get(lease_id)
        if rec is None:
            return None
        ttl = (
            self.config.lease_ttl_seconds
            if rec.lease.status == LEASE_RUNNING
            else self.config.start_deadline_seconds
        )
        with self._turn():
            return self._put_lease(rec, _replace(rec.lease, expires_at=self.clock() + ttl))

    def release_slot(self, request: SlotReleaseRequest) -> SlotReleaseReply:
        """Close a lease at process exit, or drop a hold. Unknown ids answer released=False
        (a release is idempotent)."""
        if request.reason not in RELEASE_REASONS:
            raise ValueError(
                f"release reason {request.reason!r} is not one of {', '.join(sorted(RELEASE_REASONS))}"
            )
        now = self.clock()
        with self._turn():
            if request.lease_id:
                rec = self._leases.get(request.lease_id)
                if rec is None or (request.agent_id and rec.lease.agent_id != request.agent_id):
                    return SlotReleaseReply(released=False)
                row = self._close(
                    rec, request.reason, now, exit_code=request.exit_code, error=request.error
                )
                self._pass(now)
                return SlotReleaseReply(released=True, history_row=row)
            hold = self._holds.pop(request.hold_id, None) if request.hold_id else None
            if hold is None:
                return SlotReleaseReply(released=False)
            self.tables.delete_hold(hold.hold_id)
            self._pass(now)
            return SlotReleaseReply(released=True)

    def record_usage(self, samples: dict[str, UsageSample]) -> None:
        """Fold the usage monitor's samples into the leases (durably)."""
        with self._turn():
            for lease_id, sample in samples.items():
                rec = self._leases.get(lease_id)
                if rec is not None:
                    fold_usage(rec.usage, sample)
                    self.tables.put_usage(lease_id, rec.usage)

    # -- the tick --------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Every second and after each release: expiries, stops, then the grant pass."""
        now = self.clock()
        report = TickReport()
        with self._turn():
            for hold in [h for h in self._holds.values() if h.expires_at <= now]:
                del self._holds[hold.hold_id]
                self.tables.delete_hold(hold.hold_id)
            enforcement.enforce(self, now, report)
            self.book.prune(now, self.config)
            _, report.grants = self._pass(now)
        if now - self._pruned_at > 3600:
            self._pruned_at = now
            self.tables.prune_history(
                before=now - self.config.history_days * 86400, keep_max=self.config.history_max_rows
            )
        return report

    def recover(self) -> list[JobHistoryRow]:
        """At host start: RUNNING leases end as `host-restart` (their processes are killed
        through `stop_job`), GRANTED grants are delivered again."""
        return enforcement.recover(self)

    def agent_gone(self, agent_id: str, reason: str = "vanished") -> int:
        """A paglet was disposed, departed or crashed: drop its queue entry, holds and
        not-yet-started leases in this turn. Returns how many were dropped."""
        return enforcement.agent_gone(self, agent_id, reason)

    def reconcile(self, is_known: Callable[[str], bool]) -> list[str]:
        """The 60 s sweep: drop every waiting request whose paglet the registry no longer
        knows (`vanished`). Returns the agent ids dropped."""
        return enforcement.reconcile(self, is_known)

    # -- reads -----------------------------------------------------------------------------

    def queued(self) -> list[QueuedRequest]:
        return list(self.ordered(self.clock()))

    def leases(self) -> list[SlotLease]:
        return [rec.lease for rec in self._leases.values()]

    def lease_request(self, lease_id: str) -> ComputeSlotRequest | None:
        rec = self._leases.get(lease_id)
        return rec.request if rec is not None else None

    def lease_usage(self, lease_id: str) -> LeaseUsage | None:
        rec = self._leases.get(lease_id)
        return rec.usage if rec is not None else None

    def holds(self) -> list[Hold]:
        return list(self._holds.values())

    def history(self, **filters: Any) -> list[JobHistoryRow]:
        return self.tables.history(**filters)

    def last_outcome(self, now: float) -> PassOutcome:
        """The last pass's decisions if at most 1 s old, else a fresh dry pass (no side
        effects: status reads never grant, expire or sweep)."""
        if self._outcome is not None and now - self._outcome_at <= 1.0:
            return self._outcome
        return self._run_pass(now, dry=True)

    def next_token_at(self, now: float) -> float:
        return copy.copy(self._bucket).next_token_at(now)

    # -- operations served by the sibling modules ------------------------------------------

    def cancel(self, request: CancelSlotRequestsRequest) -> CancelSlotRequestsReply:
        return enforcement.cancel(self, request)

    def why(self, request_id: str) -> WaitExplanation | None:
        return views.why(self, request_id)

    def explain_wait(self, request: ExplainWaitRequest) -> ExplainWaitReply:
        return views.explain_wait(self, request)

    def status(self, request: SchedulerStatusRequest | None = None) -> SchedulerStatusReply:
        return views.scheduler_status(self, request or SchedulerStatusRequest())

    def host_status(self) -> SchedulerHostStatus:
        return views.host_status(self)

    def plan_redirects(self, peers: Sequence[HostSummary]) -> list[RedirectPlan]:
        """Redirects to ask peers for (summaries from the local gossip table)."""
        return redirects.plan_redirects(self, peers)

    def redirect_answer(self, request_id: str, reply: SlotDecisionReply) -> RedirectOrder | None:
        return redirects.redirect_answer(self, request_id, reply)
