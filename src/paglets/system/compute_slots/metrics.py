"""The scheduler's figures in the host's `/metrics` (architecture.md §11, docs/metrics):
registered on the host's own registry (`paglets.runtime.metrics.registry_for`) when the
host's `SlotsRuntime` starts, and read at scrape time.

| metric | type | labels |
|---|---|---|
| `paglets_jobs_queue_length` | gauge | |
| `paglets_jobs_leases` | gauge | `status` (`granted`, `running`) |
| `paglets_jobs_holds` | gauge | |
| `paglets_jobs_granted_total` | counter | |
| `paglets_jobs_finished_total` | counter | `reason` (jobs.md §2.10's finish reasons) |
| `paglets_jobs` | gauge | `state` (compute status of the jobs on this host, from `job_index`) |
| `paglets_jobs_draining` | gauge | |

Counters count since the process started (Prometheus treats a restart as a reset).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .models import (
    COMPUTE_STATUS_CANCELLED,
    COMPUTE_STATUS_COMPLETED,
    COMPUTE_STATUS_FAILED_FINAL,
    COMPUTE_STATUS_NEW,
    COMPUTE_STATUS_PLACING,
    COMPUTE_STATUS_RUNNING,
    COMPUTE_STATUS_WAITING_FOR_SLOT,
    LEASE_GRANTED,
    LEASE_RUNNING,
)

if TYPE_CHECKING:
    from .host_slots import SlotsRuntime

__all__ = ["JOB_STATES", "SchedulerCollector", "register_metrics"]

_log = logging.getLogger("paglets.compute.slots")

# Always reported (0 when none), so a dashboard's series exist from the first scrape.
JOB_STATES = (
    COMPUTE_STATUS_NEW,
    COMPUTE_STATUS_PLACING,
    COMPUTE_STATUS_WAITING_FOR_SLOT,
    COMPUTE_STATUS_RUNNING,
    COMPUTE_STATUS_COMPLETED,
    COMPUTE_STATUS_FAILED_FINAL,
    COMPUTE_STATUS_CANCELLED,
)


def register_metrics(runtime: SlotsRuntime) -> None:
    """Add the scheduler's collector to its host's registry (once per runtime)."""
    from paglets.runtime.metrics import registry_for

    try:
        registry_for(runtime.host).register(SchedulerCollector(runtime))
    except Exception:  # a host without a metrics registry (a bare test double)
        _log.debug("compute-slots metrics not registered on %s", runtime.host, exc_info=True)


class SchedulerCollector:
    """Reads one host's scheduler at scrape time (on a worker thread)."""

    def __init__(self, runtime: SlotsRuntime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        if not rt.lock.acquire(timeout=2.0):  # a long turn: skip rather than stall a scrape
            return
        try:
            sched = rt.scheduler
            queued = len(sched._entries)
            statuses = [x.status for x in sched.leases()]
            holds = len(sched._holds)
            granted = sched.granted_total
            finished = dict(sched.finished_total)
            accepting = sched.accepting
        finally:
            rt.lock.release()
        yield GaugeMetricFamily(
            "paglets_jobs_queue_length", "Compute jobs queued on this host.", value=queued
        )
        leases = GaugeMetricFamily(
            "paglets_jobs_leases",
            "Leases on this host: granted (process starting) or running.",
            labels=["status"],
        )
        leases.add_metric(["granted"], statuses.count(LEASE_GRANTED))
        leases.add_metric(["running"], statuses.count(LEASE_RUNNING))
        yield leases
        yield GaugeMetricFamily(
            "paglets_jobs_holds", "Resources held for jobs about to arrive.", value=holds
        )
        yield CounterMetricFamily(
            "paglets_jobs_granted", "Slots granted by this host's scheduler.", value=granted
        )
        ends = CounterMetricFamily(
            "paglets_jobs_finished",
            "Stays of jobs on this host that ended (lease closed or queue entry left), by "
            "finish reason.",
            labels=["reason"],
        )
        for reason in sorted(finished):
            ends.add_metric([reason], finished[reason])
        yield ends
        yield GaugeMetricFamily(
            "paglets_jobs_draining",
            "1 while this host admits no new jobs (draining or stopping).",
            value=0 if accepting else 1,
        )
        yield from self._states()

    def _states(self) -> Iterator[Metric]:
        from .overview import state_counts

        try:
            counts: dict[str, Any] = state_counts(self.runtime.host)
        except Exception:  # the store is closing: report nothing rather than fail
            return
        family = GaugeMetricFamily(
            "paglets_jobs", "Compute jobs on this host by compute status.", labels=["state"]
        )
        for state in (*JOB_STATES, *sorted(set(counts) - set(JOB_STATES))):
            family.add_metric([state], counts.get(state, 0))
        yield family
