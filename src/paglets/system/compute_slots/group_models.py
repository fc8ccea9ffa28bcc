"""Job groups (jobs.md §4): the collector's records and the pure rules it applies.

Kept apart from the paglet so the rules (de-duplication by `job_key`, member and group
statuses, the paged summary) are plain functions over plain data: the collector calls them
under its state lock, and unit tests call them without a host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIVE_MEMBER_STATES",
    "GROUP_ACTIVE",
    "GROUP_CANCELLED",
    "GROUP_COMPLETE",
    "GROUP_RETURNING_HOME",
    "GROUP_WAITING_FOR_HOME",
    "MEMBER_CANCELLED",
    "MEMBER_CREATED",
    "MEMBER_FAILED",
    "MEMBER_LOST",
    "MEMBER_PLACING",
    "MEMBER_REGISTERED",
    "MEMBER_RESULT",
    "MEMBER_RUNNING",
    "MEMBER_STATES",
    "MEMBER_TIMED_OUT",
    "MEMBER_WAITING",
    "REPORT_ACCEPTED",
    "REPORT_DUPLICATE",
    "TERMINAL_MEMBER_STATES",
    "ComputeJobGroupSubmission",
    "GroupMember",
    "ReportOutcome",
    "accept_report",
    "apply_progress",
    "group_counts",
    "is_complete",
    "member_from_registration",
    "summary_payload",
]

GROUP_ACTIVE = "ACTIVE"
GROUP_COMPLETE = "COMPLETE"
GROUP_WAITING_FOR_HOME = "WAITING_FOR_HOME"
GROUP_RETURNING_HOME = "RETURNING_HOME"
GROUP_CANCELLED = "CANCELLED"

MEMBER_REGISTERED = "registered"
MEMBER_CREATED = "created"
MEMBER_PLACING = "placing"
MEMBER_WAITING = "waiting"
MEMBER_RUNNING = "running"
MEMBER_RESULT = "result"
MEMBER_FAILED = "failed"
MEMBER_CANCELLED = "cancelled"
MEMBER_TIMED_OUT = "timed_out"
MEMBER_LOST = "lost"

ACTIVE_MEMBER_STATES = (
    MEMBER_REGISTERED,
    MEMBER_CREATED,
    MEMBER_PLACING,
    MEMBER_WAITING,
    MEMBER_RUNNING,
)
TERMINAL_MEMBER_STATES = (
    MEMBER_RESULT,
    MEMBER_FAILED,
    MEMBER_CANCELLED,
    MEMBER_TIMED_OUT,
    MEMBER_LOST,
)
MEMBER_STATES = ACTIVE_MEMBER_STATES + TERMINAL_MEMBER_STATES

REPORT_ACCEPTED = "accepted"
REPORT_DUPLICATE = "duplicate"

# compute_status (jobs.md §3.1) -> member state, for `job_progress`.
_PROGRESS_STATES = {
    "NEW": MEMBER_CREATED,
    "PLACING": MEMBER_PLACING,
    "WAITING_FOR_SLOT": MEMBER_WAITING,
    "RUNNING": MEMBER_RUNNING,
}
_RANK = {state: i for i, state in enumerate(ACTIVE_MEMBER_STATES)}


@dataclass(slots=True)
class GroupMember:
    """One expected job of a group, as the collector's own records show it.

    `report_id` is the id of the first accepted report (empty: none yet); the report's
    content is kept here so a lost acknowledgement can be answered `accepted` again.
    `artifacts` are `ArtifactRef` wire dicts; `at_collector` lists the ids held on the
    collector's host.
    """

    job_key: str
    agent_id: str = ""
    state: str = MEMBER_REGISTERED
    host_name: str = ""
    host_url: str = ""
    attempt: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    initial_state: str = ""  # base64 of the encoded initial state, for retry_failed
    state_class: str = ""  # module:qualname of that state
    job_class: str = ""  # module:qualname of the job paglet
    report_id: str = ""
    result: Any = None
    error: str = ""
    kind: str = ""
    stage: str = ""
    stderr_tail: str = ""
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    at_collector: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    registered_at: float = 0.0
    last_heard_at: float = 0.0
    finished_at: float = 0.0
    recreations: int = 0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_MEMBER_STATES


@dataclass(frozen=True, slots=True)
class ComputeJobGroupSubmission:
    """What `submit_compute_job_group` returns (jobs.md §4.1).

    `collector` and `jobs` are proxies (`PagletProxy`); `creation_errors` are the
    `job_failure` payloads of jobs that could not be created; `warnings` are codes such as
    `collector-on-submitter`.
    """

    group_id: str
    collector: Any
    jobs: dict[str, Any]
    creation_errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """The collector's answer to `job_result` / `job_failure`."""

    status: str
    stand_down: bool
    newly_accepted: bool

    def to_wire(self) -> dict[str, Any]:
        return {"status": self.status, "stand_down": self.stand_down}


def member_from_registration(entry: dict[str, Any], now: float) -> GroupMember:
    key = entry.get("job_key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"register_jobs: every job needs a non-empty job_key, got {entry!r}")
    member = GroupMember(job_key=key, registered_at=now, last_heard_at=now)
    merge_registration(member, entry)
    return member


def merge_registration(member: GroupMember, entry: dict[str, Any]) -> None:
    """Merge a `register_jobs` entry: later registrations add what earlier ones lacked."""
    agent_id = entry.get("agent_id")
    if agent_id and agent_id != member.agent_id:
        member.agent_id = str(agent_id)
        if member.state == MEMBER_REGISTERED:
            member.state = MEMBER_CREATED
    if entry.get("metadata"):
        member.metadata.update(dict(entry["metadata"]))
    for name in ("initial_state", "state_class", "job_class", "host_url", "host_name"):
        value = entry.get(name)
        if value:
            setattr(member, name, str(value))


def apply_progress(member: GroupMember, payload: dict[str, Any], now: float) -> bool:
    """Apply a best-effort `job_progress`; False when it is stale or changes nothing.

    Progress never moves a member backwards within an attempt nor touches a terminal one:
    messages may arrive out of order, and a final report always wins.
    """
    member.last_heard_at = now
    if member.terminal:
        return False
    attempt = int(payload.get("attempt") or 0)
    if attempt < member.attempt:
        return False
    new_state = _PROGRESS_STATES.get(str(payload.get("compute_status") or ""))
    changed = False
    if attempt > member.attempt:
        member.attempt = attempt
        changed = True
    if new_state is not None and (changed or _RANK[new_state] > _RANK.get(member.state, -1)):
        # A new attempt starts over at placing; within one attempt states only advance.
        changed = changed or new_state != member.state
        member.state = new_state
    for name in ("host_name", "host_url"):
        value = payload.get(name)
        if value:
            setattr(member, name, str(value))
    if payload.get("agent_id"):
        member.agent_id = str(payload["agent_id"])
    return changed


def accept_report(
    members: dict[str, GroupMember],
    duplicates: list[dict[str, Any]],
    payload: dict[str, Any],
    *,
    failure: bool,
    now: float | None = None,
) -> ReportOutcome:
    """De-duplicate a final report by `job_key` (jobs.md §4.2) and record it.

    The first accepted report wins. The same `report_id` again (its acknowledgement was
    lost) is `accepted` again and changes nothing; any other report for a key that already
    has one (another attempt, a copy that survived a host's return) is `duplicate` with
    `stand_down`, and is kept in `duplicates`. A key nobody registered joins the group.
    """
    now = time.time() if now is None else now
    key = payload.get("job_key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"a job report needs a non-empty job_key, got {key!r}")
    report_id = str(payload.get("report_id") or "")
    member = members.get(key)
    if member is None:
        member = members[key] = GroupMember(job_key=key, registered_at=now)
    member.last_heard_at = now
    if member.report_id:
        if report_id and report_id == member.report_id:
            return ReportOutcome(REPORT_ACCEPTED, stand_down=False, newly_accepted=False)
        duplicates.append(
            {
                "job_key": key,
                "report_id": report_id,
                "agent_id": str(payload.get("agent_id") or ""),
                "attempt": int(payload.get("attempt") or 0),
                "host_name": str(payload.get("host_name") or ""),
                "failure": failure,
                "received_at": now,
                "artifacts": list(payload.get("artifacts") or ()),
            }
        )
        return ReportOutcome(REPORT_DUPLICATE, stand_down=True, newly_accepted=False)
    member.report_id = report_id or f"anonymous-{now}"
    member.agent_id = str(payload.get("agent_id") or member.agent_id)
    member.host_name = str(payload.get("host_name") or member.host_name)
    member.host_url = str(payload.get("host_url") or member.host_url)
    member.attempt = int(payload.get("attempt") or member.attempt)
    member.usage = dict(payload.get("usage") or {})
    member.finished_at = now
    if failure:
        member.state = MEMBER_CANCELLED if payload.get("cancelled") else MEMBER_FAILED
        member.error = str(payload.get("error") or "")
        member.kind = str(payload.get("kind") or "")
        member.stage = str(payload.get("stage") or "")
        member.stderr_tail = str(payload.get("stderr_tail") or "")
        member.artifacts = list(payload.get("partial_artifacts") or payload.get("artifacts") or ())
    else:
        member.state = MEMBER_RESULT
        member.result = payload.get("result")
        member.error = ""
        member.artifacts = list(payload.get("artifacts") or ())
    return ReportOutcome(REPORT_ACCEPTED, stand_down=False, newly_accepted=True)


def group_counts(members: dict[str, GroupMember]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(MEMBER_STATES, 0)
    for member in members.values():
        counts[member.state] = counts.get(member.state, 0) + 1
    return counts


def is_complete(members: dict[str, GroupMember]) -> bool:
    """Complete = every expected member is terminal (an empty group is not complete)."""
    return bool(members) and all(m.terminal for m in members.values())


def artifact_bytes(
    members: dict[str, GroupMember], home_host_id: str, home_host_url: str
) -> tuple[int, int]:
    """(bytes on the home host, bytes elsewhere) over every member's artifacts.

    A ref is home when its `host_id` is home's (survives an address change), else when its
    URL is home's."""
    here = elsewhere = 0
    home_url = home_host_url.rstrip("/")
    for member in members.values():
        for ref in member.artifacts:
            size = int(ref.get("size_bytes") or 0)
            ref_id = ref.get("host_id") or ""
            at_home = (
                (ref_id == home_host_id)
                if (ref_id and home_host_id)
                else (bool(home_url) and str(ref.get("host_url") or "").rstrip("/") == home_url)
            )
            if at_home:
                here += size
            else:
                elsewhere += size
    return here, elsewhere


def member_row(member: GroupMember, *, details: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "job_key": member.job_key,
        "state": member.state,
        "host_name": member.host_name,
        "attempt": member.attempt,
        "agent_id": member.agent_id,
    }
    if details or member.state != MEMBER_RESULT:
        row["error"] = member.error
        row["kind"] = member.kind
        row["stage"] = member.stage
        row["stderr_tail"] = member.stderr_tail
    if details:
        row["result"] = member.result
        row["artifacts"] = list(member.artifacts)
        row["at_collector"] = list(member.at_collector)
        row["usage"] = dict(member.usage)
        row["host_url"] = member.host_url
        row["report_id"] = member.report_id
        row["metadata"] = dict(member.metadata)
        row["finished_at"] = member.finished_at
    return row


def summary_payload(
    group: dict[str, Any],
    members: dict[str, GroupMember],
    *,
    offset: int = 0,
    limit: int = 100,
    details: bool = False,
    home_host_id: str = "",
    home_host_url: str = "",
) -> dict[str, Any]:
    """The `summary` reply: group fields, counts per member state, one page of members.

    `group` holds the collector's own fields (status, ids, home, deadline, policy...);
    members are sorted by key so pages are stable.
    """
    if offset < 0 or limit < 0:
        raise ValueError(f"summary: offset and limit must be >= 0, got {offset}, {limit}")
    counts = group_counts(members)
    keys = sorted(members)
    page = [member_row(members[k], details=details) for k in keys[offset : offset + limit]]
    here, elsewhere = artifact_bytes(members, home_host_id, home_host_url)
    failures = [
        {"job_key": m.job_key, "error": m.error, "kind": m.kind, "stage": m.stage}
        for m in members.values()
        if m.state in (MEMBER_FAILED, MEMBER_TIMED_OUT, MEMBER_LOST)
    ]
    done = counts[MEMBER_RESULT]
    return {
        **group,
        "expected": len(members),
        "done": done,
        "result_count": done,
        "failure_count": counts[MEMBER_FAILED],
        "failed": counts[MEMBER_FAILED],
        "cancelled": counts[MEMBER_CANCELLED],
        "timed_out": counts[MEMBER_TIMED_OUT],
        "lost": counts[MEMBER_LOST],
        "running": counts[MEMBER_RUNNING],
        "waiting": counts[MEMBER_WAITING] + counts[MEMBER_PLACING],
        "terminal": sum(counts[s] for s in TERMINAL_MEMBER_STATES),
        "complete": is_complete(members),
        "counts": counts,
        "failures": failures[:100],
        "artifact_bytes_home": here,
        "artifact_bytes_elsewhere": elsewhere,
        "offset": offset,
        "limit": limit,
        "members": page,
        "next_offset": offset + len(page) if offset + len(page) < len(keys) else None,
    }
