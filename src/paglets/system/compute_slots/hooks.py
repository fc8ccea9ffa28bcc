"""What the scheduler asks of its host (`SchedulerHooks`), what a tick reports, and the
in-memory record of a lease. Split from `scheduler.py` to keep that module about turns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .models import (
    ComputeSlotRequest,
    JobHistoryRow,
    LeaseUsage,
    SlotLease,
)
from .redirects import PeerView

__all__ = ["LeaseRecord", "SchedulerHooks", "TickReport"]


def _none(*_args: Any) -> None:
    return None


@dataclass(slots=True)
class SchedulerHooks:
    """What the scheduler asks of its host; all run after the turn's commit.

    * `deliver_grant(lease, request)`: activate the waiting job with its grant. Return
      None when delivered, else why not: "vanished" (no such paglet) or any other text
      (activation failed, e.g. an ImportError); the lease is then rolled back.
    * `stop_job(lease, reason, grace_seconds)`: SIGTERM the job's process group, SIGKILL
      after the grace. The lease closes when the process exit is reported.
    * `cancel_waiting(request)`: tell a job that was queued or granted, not running, that
      it was cancelled (`compute_cancel`).
    * `capable_peer(request)`: the best alive peer that could ever run a request this host
      cannot (for `redirect`), or None (`rejected`).
    * `event(kind, data)`: a user-visible event (activation failures, stops).
    """

    deliver_grant: Callable[[SlotLease, ComputeSlotRequest], str | None] = _none
    stop_job: Callable[[SlotLease, str, float], None] = _none
    cancel_waiting: Callable[[ComputeSlotRequest], None] = _none
    capable_peer: Callable[[ComputeSlotRequest], PeerView | None] = _none
    event: Callable[[str, dict[str, Any]], None] = _none


@dataclass(slots=True)
class TickReport:
    grants: list[SlotLease] = field(default_factory=list)
    closed: list[JobHistoryRow] = field(default_factory=list)
    stops: list[tuple[SlotLease, str]] = field(default_factory=list)


class LeaseRecord:
    """A lease with the request it grants and its running usage figures."""

    __slots__ = ("lease", "request", "usage")

    def __init__(self, lease: SlotLease, request: ComputeSlotRequest, usage: LeaseUsage) -> None:
        self.lease = lease
        self.request = request
        self.usage = usage
