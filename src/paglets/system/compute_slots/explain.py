"""`why`: every reason a queued request has not started, with numbers (jobs.md §2.11).

The grant pass records the code that decided for each request (reservation, backfill-off,
throttle, or the first resource short); this module turns that and the current free pool
into sentences. Resource reasons are all listed, not only the first: a job short of both
cores and memory says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .accounting import Pool, pick_gpus
from .config import SchedulerConfig
from .models import (
    ComputeSlotRequest,
    Hold,
    WaitReason,
)
from .planner import PassOutcome

__all__ = ["clock_text", "job_label", "resource_reasons", "wait_reasons"]

_GIB = 1024**3


def clock_text(at: float, *, seconds: bool = False) -> str:
    return time.strftime("%H:%M:%S" if seconds else "%H:%M", time.localtime(at))


def job_label(request: ComputeSlotRequest) -> str:
    if request.group_id and request.job_key:
        return f"{request.group_id}/{request.job_key}"
    return request.job_id


def _cores(n: int) -> str:
    return f"{n} core" if n == 1 else f"{n} cores"


def _gib(n: float) -> str:
    return f"{n / _GIB:.1f} GiB"


def resource_reasons(request: ComputeSlotRequest, pool: Pool) -> list[WaitReason]:
    """Every resource of `pool` that does not cover `request` now."""
    out: list[WaitReason] = []
    if pool.blocked is not None:
        out.append(pool.blocked)
    if pool.slots_left <= 0:
        out.append(WaitReason("max-jobs", "the host runs as many jobs as max_active_leases allows"))
    free_cores = min(pool.cores, len(pool.ids)) if pool.affinity else pool.cores
    if request.cpu_cores > free_cores:
        text = f"needs {_cores(request.cpu_cores)}, {max(0, free_cores)} free"
        if pool.external_cores:
            text += f", {pool.external_cores} taken by external load"
        out.append(WaitReason("cpu", text, need=request.cpu_cores, have=max(0, free_cores)))
    if request.memory_bytes > pool.memory:
        out.append(
            WaitReason(
                "memory",
                f"needs {_gib(request.memory_bytes)} memory, {_gib(max(0, pool.memory))} free",
                need=request.memory_bytes,
                have=max(0, pool.memory),
            )
        )
    if request.temp_storage_bytes > pool.temp:
        out.append(
            WaitReason(
                "temp-storage",
                f"needs {_gib(request.temp_storage_bytes)} temp storage, "
                f"{_gib(max(0, pool.temp))} free",
                need=request.temp_storage_bytes,
                have=max(0, pool.temp),
            )
        )
    if request.requires_gpu:
        if not pool.gpu_ok:
            out.append(
                WaitReason("host-status", "sampler failed: gpu; no new GPU lease until it works")
            )
        elif len(pool.gpus) < request.gpu_count:
            out.append(
                WaitReason(
                    "gpu",
                    f"needs {request.gpu_count} GPU(s), {len(pool.gpus)} free",
                    need=request.gpu_count,
                    have=len(pool.gpus),
                )
            )
        elif pick_gpus(pool.gpus, request.gpu_count, request.gpu_memory_mb) is None:
            best = max((g.memory_total_mb for g in pool.gpus), default=0)
            out.append(
                WaitReason(
                    "gpu-memory",
                    f"needs GPUs with {request.gpu_memory_mb} MB, free ones have at most {best} MB",
                    need=request.gpu_memory_mb,
                    have=best,
                )
            )
    return out


def wait_reasons(
    request: ComputeSlotRequest,
    *,
    position: int,
    ahead: Sequence[ComputeSlotRequest],
    pool: Pool,
    pool_without_holds: Pool | None,
    holds: Sequence[Hold],
    outcome: PassOutcome | None,
    next_token_at: float,
    effective_priority_of: dict[str, int],
    now: float,
    config: SchedulerConfig,
    accepting: bool,
    errors: Sequence[str],
    duration: float,
) -> list[WaitReason]:
    """All reasons a queued request waits, most decisive first."""
    out: list[WaitReason] = []
    if not accepting:
        out.append(WaitReason("draining", "the host is draining: it starts no new job"))
    for name in errors:
        if name != "gpu" or request.requires_gpu:
            out.append(WaitReason("host-status", f"sampler failed: {name}"))
    resources = resource_reasons(request, pool)
    out.extend(r for r in resources if not (r.code == "host-status" and errors))
    if (
        resources
        and holds
        and pool_without_holds is not None
        and not resource_reasons(request, pool_without_holds)
    ):
        until = min(h.expires_at for h in holds)
        out.append(
            WaitReason(
                "hold",
                f"resources held for an incoming job until {clock_text(until, seconds=True)}",
                until=until,
            )
        )
    code = outcome.blocked.get(request.request_id) if outcome is not None else None
    if code in ("reservation", "backfill-off") and outcome is not None:
        for r in outcome.reservations:
            if r.request_id == request.request_id:
                continue
            if code == "backfill-off" and r.off:
                out.append(
                    WaitReason(
                        "backfill-off",
                        f"reserved job {r.job_id} slipped {r.slip / 60:.0f} min; backfill "
                        "stopped until it starts",
                        have=r.slip,
                    )
                )
                break
            if code == "reservation":
                end = now + duration
                out.append(
                    WaitReason(
                        "reservation",
                        f"held for {r.job_id} from ≈ {clock_text(r.t_res)}; this job would "
                        f"end ≈ {clock_text(end)}",
                        until=r.t_res,
                    )
                )
                break
    if code == "throttle" or (not resources and next_token_at > now):
        wait = max(0.0, next_token_at - now)
        out.append(WaitReason("throttle", f"next start token in {wait:.1f} s", until=next_token_at))
    if position > 1 and ahead:
        first = ahead[0]
        prio = effective_priority_of.get(first.request_id, first.priority)
        out.append(
            WaitReason(
                "queue-order",
                f"{position - 1} ahead; first {job_label(first)}, priority {prio}",
                have=position - 1,
            )
        )
    last = request.last_redirect_at
    if last and now - last < config.redirect_cooldown_seconds:
        until = last + config.redirect_cooldown_seconds
        out.append(
            WaitReason(
                "redirect-cooldown",
                f"may move again at {clock_text(until, seconds=True)}",
                until=until,
            )
        )
    return out
