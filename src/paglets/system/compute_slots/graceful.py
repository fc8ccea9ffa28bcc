"""Running jobs at a graceful stop (jobs.md §3.7, network.md §5 step 2, cli.md §1.3).

A graceful stop (`Host.shutdown()`, SIGTERM/SIGINT of `paglets host`) and an auto-update
restart first *drain*: the host takes no new work (its scheduler stops granting), and the
jobs that run get up to `--restart-grace` (`Host(restart_grace=...)`, 10 minutes) to end
on their own. A job that ends within the grace ends as it would anyway (`COMPLETED`, a
failure, ...). One still running when the grace is over is stopped (SIGTERM, the kill
grace, SIGKILL) with the finish reason `graceful-stop`: its paglet goes back to `PLACING`
from its last checkpoint (or its restart snapshot) **without** using up an attempt and
runs again after the restart. Only a stop the host did not choose (a crash, SIGKILL of
the host) ends a running job as `host-restart`, which counts.

The lease keeps `stop_reason = graceful-stop` durably, so even a job whose exit the host
could not hand to its paglet before it stopped is recognised after the restart: the
recovery closes that lease as `graceful-stop`, not `host-restart`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .enforcement import request_stop
from .host_slots import SlotsRuntime, existing_runtime
from .models import LEASE_GRANTED, LEASE_RUNNING

__all__ = [
    "DEFAULT_RESTART_GRACE",
    "GRACEFUL_STOP",
    "FinishReport",
    "finish_running_jobs",
    "job_counts",
    "stop_running_gracefully",
]

_log = logging.getLogger("paglets.compute.slots")

GRACEFUL_STOP = "graceful-stop"
DEFAULT_RESTART_GRACE = 600.0
EXIT_WAIT = 10.0  # after SIGKILL: for the exits to reach their paglets
_POLL = 0.05


@dataclass(frozen=True, slots=True)
class FinishReport:
    """What a graceful stop found: jobs running at its start, those that ended within the
    grace, those stopped after it, and those still unreported when it gave up waiting."""

    running: int = 0
    finished: int = 0
    stopped: int = 0
    unreported: int = 0


def job_counts(host: Any) -> dict[str, int]:
    """`{running_jobs, queued}` from the host's scheduler (zeros without one). Running
    counts granted (starting) jobs too: both end only when their process does."""
    rt = existing_runtime(host)
    if rt is None:
        return {"running_jobs": 0, "queued": 0}
    with rt.lock:
        leases = rt.scheduler.leases()
        queued = len(rt.scheduler.queued())
    running = sum(1 for x in leases if x.status in (LEASE_RUNNING, LEASE_GRANTED))
    return {"running_jobs": running, "queued": queued}


def _busy(rt: SlotsRuntime) -> bool:
    """Any lease that runs, or an exit its paglet has not taken yet."""
    with rt.lock:
        running = any(x.status == LEASE_RUNNING for x in rt.scheduler.leases())
    return running or rt.supervisor.pending() > 0


def _wait(rt: SlotsRuntime, deadline: float) -> bool:
    while _busy(rt):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def stop_running_gracefully(rt: SlotsRuntime, kill_grace: float) -> int:
    """Stop every running job as `graceful-stop` (one scheduler turn; the signals follow
    it). Returns how many were asked to stop."""
    sched = rt.scheduler
    with rt.lock:
        now = sched.clock()
        targets = [r for r in sched._leases.values() if r.lease.status == LEASE_RUNNING]
        with sched._turn():
            for rec in targets:
                request_stop(sched, rec, GRACEFUL_STOP, kill_grace, now)
    return len(targets)


def finish_running_jobs(
    host: Any, grace: float = DEFAULT_RESTART_GRACE, *, kill_grace: float | None = None
) -> FinishReport:
    """Steps of a graceful stop for compute jobs (module docstring): drain, wait up to
    `grace` seconds for running jobs, then stop the rest without using up an attempt.
    Returns at once on a host without a scheduler or without running jobs."""
    rt = existing_runtime(host)
    if rt is None:
        return FinishReport()
    running = job_counts(host)["running_jobs"]
    if not running and rt.supervisor.pending() == 0:
        return FinishReport()
    drain = getattr(host, "drain", None)
    if drain is not None:  # no new grants or arrivals while the jobs finish
        drain.set(True, reason="restart")
    rt.finishing = True
    try:
        with rt.lock:
            rt.scheduler.set_accepting(False)
        _log.info(
            "host %s stops: %d running compute jobs get up to %gs to finish",
            host.name,
            running,
            grace,
        )
        if _wait(rt, time.monotonic() + max(0.0, grace)):
            return FinishReport(running=running, finished=running)
        grace_kill = rt.config.kill_grace_seconds if kill_grace is None else kill_grace
        stopped = stop_running_gracefully(rt, grace_kill)
        _log.info(
            "host %s stops: %d compute jobs still ran after %gs; stopped, they run again "
            "after the restart (attempt unchanged)",
            host.name,
            stopped,
            grace,
        )
        _wait(rt, time.monotonic() + grace_kill + EXIT_WAIT)
        unreported = rt.supervisor.pending()
        return FinishReport(
            running=running,
            finished=max(0, running - stopped),
            stopped=stopped,
            unreported=unreported,
        )
    finally:
        rt.finishing = False
