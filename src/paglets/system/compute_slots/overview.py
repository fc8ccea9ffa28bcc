"""What one host knows about its jobs, for the dashboard (`GET /jobs`, `/jobs/queue`,
`/jobs/groups`, runtime/jobs_routes.py) and `/metrics` (metrics.py).

Everything is read locally and cheaply: jobs and collectors from `job_index` (one row per
paglet, written at each transition, jobs.md §8), the queue and leases from the host's
scheduler (under its lock, without side effects), group progress from the `summary` of
each `ResultCollectorPaglet` that lives on this host. The mesh-wide views stay with
`paglets jobs`, which fans out to every member.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .catalog import ListJobsRequest
from .host_slots import existing_runtime
from .job_index import list_rows

__all__ = ["MAX_GROUPS", "job_rows", "local_groups", "queue_and_leases", "state_counts"]

_log = logging.getLogger("paglets.compute.slots")

MAX_GROUPS = 200
SUMMARY_TIMEOUT = 5.0


def job_rows(
    host: Any, *, limit: int = 50, offset: int = 0, states: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`{jobs, total, offset, limit}`: compute jobs and collectors on this host, most
    useful columns first (the dashboard shows the first ten)."""
    reply = list_rows(host, ListJobsRequest(states=states, offset=offset, limit=limit))
    jobs = [
        {
            "job_id": r.job_id,
            "compute_status": r.compute_status,
            "group_id": r.group_id,
            "job_key": r.job_key,
            "attempt": r.attempt,
            "kind": r.kind,
            "host_name": r.host_name,
            "active": r.active,
            "since": r.since,
            "agent_class": r.agent_class,
            "agent_id": r.agent_id,
            "owner": r.owner,
        }
        for r in reply.rows
    ]
    return {"jobs": jobs, "total": reply.total, "offset": offset, "limit": limit}


def queue_and_leases(host: Any) -> dict[str, Any]:
    """`{queue, leases}`: this host's queue in grant order and its leases (empty on a
    host without the jobs system)."""
    rt = existing_runtime(host)
    if rt is None:
        return {"queue": [], "leases": []}
    from .views import queue_view

    with rt.lock:
        sched = rt.scheduler
        now = sched.clock()
        entries = queue_view(sched, now)
        leases = [(lease, sched.lease_request(lease.lease_id)) for lease in sched.leases()]
    queue = [
        {
            "job_id": e.job_id,
            "state": "queued",
            "position": e.position,
            "group_id": e.group_id,
            "job_key": e.job_key,
            "cpu_cores": e.cpu_cores,
            "memory_bytes": e.memory_bytes,
            "waited_seconds": round(e.waited_seconds, 1),
            "expected_start_at": e.expected_start_at,
            "first_reason": e.first_reason,
            "owner": e.owner,
            "agent_id": e.agent_id,
        }
        for e in entries
    ]
    out = [
        {
            "job_id": lease.job_id,
            "state": lease.status.lower(),
            "lease_id": lease.lease_id,
            "group_id": request.group_id if request is not None else "",
            "job_key": request.job_key if request is not None else "",
            "cpu_cores": lease.cpu_cores,
            "memory_bytes": lease.memory_bytes,
            "pid": lease.pid,
            "started_at": lease.started_at,
            "stop_reason": lease.stop_reason,
            "agent_id": lease.agent_id,
        }
        for lease, request in leases
    ]
    return {"queue": queue, "leases": out}


def local_groups(host: Any, *, limit: int = MAX_GROUPS) -> dict[str, Any]:
    """`{groups}`: the summary of every job group whose collector lives on this host,
    newest first. A collector that does not answer is listed from its index row with
    its error, never left out."""
    from paglets.core.messages import Message

    rows = list_rows(host, ListJobsRequest(kinds=("collector",), limit=limit)).rows
    groups: list[dict[str, Any]] = []
    for row in rows:
        try:
            doc = host.proxy(row.agent_id).send(
                Message("summary", {"limit": 0}), timeout=SUMMARY_TIMEOUT
            )
        except Exception as exc:
            _log.info("collector %s did not answer summary: %s", row.agent_id, exc)
            doc = {
                "group_id": row.group_id,
                "status": row.compute_status,
                "collector_agent_id": row.agent_id,
                "collector_host_name": row.host_name,
                "error": f"{type(exc).__name__}: {exc}",
            }
        if not isinstance(doc, dict):
            continue
        doc = {k: v for k, v in doc.items() if k not in ("members", "failures", "counts")}
        doc["collector_host"] = doc.get("collector_host_name") or host.name
        for key in ("expected", "done", "failed", "cancelled", "running", "waiting"):
            doc.setdefault(key, 0)
        groups.append(doc)
    groups.sort(key=lambda d: (-(d.get("created_at") or 0.0), str(d.get("group_id"))))
    return {"groups": groups, "at": time.time()}


def state_counts(host: Any, kind: str = "job") -> dict[str, int]:
    """Compute jobs on this host by `compute_status` (from `job_index`: no state decoded)."""
    from .job_index import _store

    rows = _store(host).query(
        "SELECT compute_status, COUNT(*) FROM job_index WHERE kind = ? GROUP BY compute_status",
        (kind,),
    )
    return {str(status): int(n) for status, n in rows}
