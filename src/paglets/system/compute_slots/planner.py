"""The grant pass (jobs.md §2.5, §2.6): which queued requests start now. Pure: it reads a
free `Pool`, the running leases' bound ends and the start bucket, and returns what to
grant and why the others wait; the scheduler does the bookkeeping and the I/O.

In order: (1) grant each request that fits now, while a start token is free; (2) the first
request that can run here but does not fit gets a **reservation** — the earliest time
`t_res` the running leases' bound ends free enough for it, and what will be spare then;
(3) a later request is **backfilled** only if it fits now and either ends (by its walltime,
else its estimate) before `t_res` or needs only what the reservation leaves spare.
Estimates can be wrong, so each reserved request's slips add up; once they pass
`max_slip` backfill stops until it starts: a big job then waits at most for the jobs
running at that moment.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from .accounting import Pool, Release, job_duration
from .inputs import GpuSpec
from .models import (
    ComputeSlotRequest,
)

__all__ = [
    "Grant",
    "PassOutcome",
    "Reservation",
    "SlipRecord",
    "TokenBucket",
    "earliest_fit",
    "expected_starts",
    "grant_pass",
]

_END = attrgetter("end")


class TokenBucket:
    """The start throttle: `burst` tokens refilled at `rate` per second; a grant takes one.

    Why: many interpreters starting at once import their libraries together, and measured
    free memory lags what they will allocate. A bucket spreads starts without making a job
    that fits sleep for a fixed interval."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst = float(burst)
        self.rate = rate
        self.tokens = float(burst)
        self.at = now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def give_back(self) -> None:
        """Return a token whose grant was rolled back (the job had vanished)."""
        self.tokens = min(self.burst, self.tokens + 1.0)

    def next_token_at(self, now: float) -> float:
        self._refill(now)
        return now if self.tokens >= 1.0 else now + (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class SlipRecord:
    """How far a reserved request's `t_res` has slipped in total; `off` stops backfill."""

    prev_t_res: float
    total: float = 0.0
    off: bool = False
    dirty: bool = True


@dataclass(slots=True)
class Reservation:
    request_id: str
    job_id: str
    t_res: float
    need: tuple[int, int, int, int]  # cores, memory, temp, gpus
    spare: list[int]  # what stays free at t_res beside the reserved job
    end: float = 0.0  # when the reserved job should end (t_res + its duration)
    off: bool = False  # backfill stopped: the reservation slipped too far
    slip: float = 0.0

    def fits_spare(self, request: ComputeSlotRequest) -> bool:
        s = self.spare
        return (
            request.cpu_cores <= s[0]
            and request.memory_bytes <= s[1]
            and request.temp_storage_bytes <= s[2]
            and request.gpus_needed <= s[3]
        )

    def use_spare(self, request: ComputeSlotRequest) -> None:
        s = self.spare
        s[0] -= request.cpu_cores
        s[1] -= request.memory_bytes
        s[2] -= request.temp_storage_bytes
        s[3] -= request.gpus_needed


@dataclass(slots=True)
class Grant:
    request: ComputeSlotRequest
    cpu_ids: tuple[int, ...]
    gpus: tuple[GpuSpec, ...]


@dataclass(slots=True)
class PassOutcome:
    """What the pass granted, and for each request it did not grant, the deciding code:
    a resource code from `Pool.shortfall`, or `reservation`, `backfill-off`, `throttle`."""

    grants: list[Grant] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    reservations: list[Reservation] = field(default_factory=list)


def _gpus_fitting(gpus: Sequence[GpuSpec], min_mb: int) -> int:
    return sum(1 for g in gpus if g.memory_total_mb >= min_mb)


def _earliest(
    request: ComputeSlotRequest,
    pool: Pool,
    releases: Sequence[Release],
    prior: Sequence[Reservation],
    now: float,
) -> tuple[float, list[int]] | None:
    """When the releases (in end order) free enough for `request`, after the prior
    reservations take theirs, and what is spare then. None if they never do (something
    outside the leases, external load or memory, is in the way)."""
    min_mb = request.gpu_memory_mb
    cores = min(pool.cores, len(pool.ids)) if pool.affinity else pool.cores
    have = [cores, pool.memory, pool.temp, _gpus_fitting(pool.gpus, min_mb)]
    need = (
        request.cpu_cores,
        request.memory_bytes,
        request.temp_storage_bytes,
        request.gpus_needed,
    )
    # Events: the releases, and the ends of earlier reservations' jobs (which start at
    # their t_res, take their need, and give it back when they end).
    events = [
        (rel.end, rel.cores, rel.memory, rel.temp, _gpus_fitting(rel.gpus, min_mb))
        for rel in releases
    ]
    if prior:
        events.extend((r.end, *r.need) for r in prior)
        events.sort(key=lambda e: e[0])
    for end, *give in events:
        for i in range(4):
            have[i] += give[i]
        t = max(end, now)
        eff = list(have)
        for r in prior:
            if r.t_res <= t:
                for i in range(4):
                    eff[i] -= r.need[i]
        if all(eff[i] >= need[i] for i in range(4)):
            return t, [eff[i] - need[i] for i in range(4)]
    return None


def earliest_fit(
    request: ComputeSlotRequest, pool: Pool, releases: Sequence[Release], now: float
) -> float | None:
    """The earliest time `request` would fit if nothing else started: now if it fits."""
    if pool.shortfall(request) is None:
        return now
    if pool.blocked is not None:
        return None
    found = _earliest(request, pool, releases, (), now)
    return None if found is None else found[0]


def _track_slip(
    slips: dict[str, SlipRecord], request_id: str, t_res: float, max_slip: float
) -> SlipRecord:
    rec = slips.get(request_id)
    if rec is None:
        rec = slips[request_id] = SlipRecord(prev_t_res=t_res)
    elif abs(t_res - rec.prev_t_res) > 1e-6:
        if t_res > rec.prev_t_res:
            rec.total += t_res - rec.prev_t_res
        rec.prev_t_res = t_res
        rec.dirty = True
    if not rec.off and rec.total > max_slip:
        rec.off = True
        rec.dirty = True
    return rec


def grant_pass(
    order: Sequence[ComputeSlotRequest],
    pool: Pool,
    releases: list[Release],
    bucket: TokenBucket,
    now: float,
    *,
    walltime_of: Callable[[ComputeSlotRequest], float],
    depth: int = 1,
    max_slip: float = 3600.0,
    slips: dict[str, SlipRecord] | None = None,
    numa_nodes: Sequence[Sequence[int]] = (),
) -> PassOutcome:
    """One pass over the queue in order. `releases` (sorted by end) is extended with the
    grants made here; `pool` and `bucket` are consumed; `slips` is updated in place."""
    out = PassOutcome()
    slips = {} if slips is None else slips
    reservations = out.reservations
    stop: str | None = None
    for request in order:
        rid = request.request_id
        if stop is not None:
            out.blocked[rid] = stop
            continue
        short = pool.shortfall(request)
        if short is None:
            end = now + job_duration(walltime_of(request), request.estimated_runtime_seconds)
            long_for: list[Reservation] = []
            blocked_by: str | None = None
            for r in reservations:
                if r.off:
                    blocked_by = "backfill-off"
                    break
                if end > r.t_res:
                    if not r.fits_spare(request):
                        blocked_by = "reservation"
                        break
                    long_for.append(r)
            if blocked_by is not None:
                out.blocked[rid] = blocked_by
                continue
            if not bucket.take(now):
                out.blocked[rid] = stop = "throttle"
                continue
            for r in long_for:
                r.use_spare(request)
            ids, gpus = pool.take(request, numa_nodes)
            out.grants.append(Grant(request, ids, gpus))
            insort(
                releases,
                Release(
                    end,
                    request.cpu_cores,
                    request.memory_bytes,
                    request.temp_storage_bytes,
                    gpus,
                    rid,
                ),
                key=_END,
            )
            continue
        out.blocked[rid] = short
        if short == "max-jobs" or pool.blocked is not None:
            stop = short  # nothing can start this pass
            continue
        if len(reservations) < depth and short != "host-status":
            found = _earliest(request, pool, releases, reservations, now)
            if found is not None:
                t_res, spare = found
                rec = _track_slip(slips, rid, t_res, max_slip)
                need = (
                    request.cpu_cores,
                    request.memory_bytes,
                    request.temp_storage_bytes,
                    request.gpus_needed,
                )
                duration = job_duration(walltime_of(request), request.estimated_runtime_seconds)
                reservations.append(
                    Reservation(
                        rid,
                        request.job_id,
                        t_res,
                        need,
                        spare,
                        end=t_res + duration,
                        off=rec.off,
                        slip=rec.total,
                    )
                )
                if rec.off:
                    stop = "backfill-off"
                    continue
        if len(reservations) >= depth and pool.cores <= 0:
            stop = "cpu"  # every request needs a core: none can start this pass
    return out


def expected_starts(
    order: Sequence[ComputeSlotRequest],
    pool: Pool,
    releases: Sequence[Release],
    now: float,
    duration_of: Callable[[ComputeSlotRequest], float],
) -> list[float | None]:
    """When each request in `order` should start if they start in order as resources come
    free (no backfill: an upper estimate). None for a request that never fits with what
    the leases will give back (external load or memory stands in the way)."""
    c = min(pool.cores, len(pool.ids)) if pool.affinity else pool.cores
    m, tp, g = pool.memory, pool.temp, len(pool.gpus)
    heap = [
        (rel.end, i, rel.cores, rel.memory, rel.temp, len(rel.gpus))
        for i, rel in enumerate(releases)
    ]
    heapq.heapify(heap)
    seq = len(heap)
    t = now
    out: list[float | None] = []
    push, pop = heapq.heappush, heapq.heappop
    for r in order:  # the hot loop of every sleep reply: plain locals, no generators
        nc, nm, nt = r.cpu_cores, r.memory_bytes, r.temp_storage_bytes
        ng = r.gpu_count if r.requires_gpu else 0
        while heap and (c < nc or m < nm or tp < nt or g < ng):
            end, _, gc, gm, gt, gg = pop(heap)
            if end > t:
                t = end
            c, m, tp, g = c + gc, m + gm, tp + gt, g + gg
        if c < nc or m < nm or tp < nt or g < ng:
            out.append(None)
            continue
        out.append(t)
        c, m, tp, g = c - nc, m - nm, tp - nt, g - ng
        seq += 1
        push(heap, (t + duration_of(r), seq, nc, nm, nt, ng))
    return out
