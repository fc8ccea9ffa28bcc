"""The runtime's messages to a compute job (jobs.md §3.3-§3.5), as a mixin of
`ComputeJobPaglet`: each is one turn of the job, so a grant, an exit, a cancel and the
job's own steps never overlap.

| kind | from | effect |
|---|---|---|
| `compute_advance` | the job itself (`run()`, timers) | the next step of the state machine |
| `compute_sleep` | the job itself | deactivate until a time, unless something happened since |
| `compute_slot_grant` | the scheduler | start the job process with the lease |
| `compute_job_exit` | the supervisor | the attempt ended: success, retry or final |
| `compute_job_checkpoint`, `compute_job_progress`, `compute_job_notify` | the job process | state pushed, progress, a notification |
| `compute_cancel` | users, collectors, the scheduler | end as `CANCELLED` (stop the process first) |
| `compute_slot_redirect` | the scheduler | move to a host that holds resources for it |
| `status`, `compute_status` | anyone | where the job stands |
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from paglets.persistence.policy import DeactivationPolicy
from paglets.system.host_access import host_of

from . import job_rules
from .models import (
    COMPUTE_STATUS_CANCELLED,
    COMPUTE_STATUS_COMPLETED,
    COMPUTE_STATUS_FAILED_FINAL,
    COMPUTE_STATUS_PLACING,
    COMPUTE_STATUS_RUNNING,
    COMPUTE_STATUS_WAITING_FOR_SLOT,
    CancelSlotRequestsRequest,
    RedirectHop,
    SlotLease,
)

__all__ = ["SYSTEM_MESSAGES", "TERMINAL", "JobMessages"]

TERMINAL = frozenset(
    {COMPUTE_STATUS_COMPLETED, COMPUTE_STATUS_FAILED_FINAL, COMPUTE_STATUS_CANCELLED}
)

# kind -> handler method; the runtime's messages go before the application's.
SYSTEM_MESSAGES: dict[str, str] = {
    "compute_advance": "_on_advance",
    "compute_sleep": "_on_sleep",
    "compute_slot_grant": "_on_grant",
    "compute_job_exit": "_on_exit",
    "compute_job_checkpoint": "_on_checkpoint",
    "compute_job_progress": "_on_progress",
    "compute_job_notify": "_on_notify",
    "compute_cancel": "_on_cancel",
    "compute_slot_redirect": "_on_redirect",
    "status": "_on_status",
    "compute_status": "_on_status",
}


class JobMessages:
    """The handlers; `self` is a `ComputeJobPaglet`."""

    state: Any
    agent_id: str
    departed: bool

    if TYPE_CHECKING:  # the rest of ComputeJobPaglet, which this class is a part of

        def __getattr__(self, name: str) -> Any: ...

    def _on_advance(self, _args: dict[str, Any]) -> None:
        self._advance()

    def _on_sleep(self, args: dict[str, Any]) -> None:
        st = self.state
        if st.compute_status != args.get("status") or st.slot_lease_id or self.departed:
            return  # something happened since: stay awake
        self.deactivate(reason="compute-wait", policy=DeactivationPolicy(activate_at=args["at"]))

    def _on_grant(self, args: dict[str, Any]) -> None:
        import msgspec

        lease = msgspec.convert(args["lease"], SlotLease)
        st = self.state
        if lease.agent_id != self.agent_id or st.compute_status in TERMINAL:
            return
        if st.slot_lease_id and st.slot_lease_id != lease.lease_id:
            return
        if self.runtime.supervisor.handle(lease.lease_id) is not None:
            return
        self._start(lease)

    def _on_exit(self, args: dict[str, Any]) -> None:
        st = self.state
        lease_id = str(args.get("lease_id") or "")
        outcome = self.runtime.supervisor.take_outcome(lease_id)
        if outcome is None or lease_id != st.slot_lease_id:
            return
        st.slot_lease_id = ""
        st.exit_code = outcome.exit_code
        st.cpu_affinity_enforced = outcome.affinity_enforced
        st.cpu_affinity_error = outcome.affinity_error
        if outcome.ok:
            job_rules.merge_app_state(st, outcome.state)
            st.finished_at = time.time()
            st.compute_error = st.compute_failure_kind = ""
            self._transition(COMPUTE_STATUS_COMPLETED)
            self._success()
            return
        st.stderr_tail = outcome.stderr_tail
        kind = outcome.kind
        if kind == "stopped" and outcome.stop_reason == "graceful-stop":
            # The host stops gracefully (graceful.py): run again after the restart, the
            # attempt not used up. No kick: the host is stopping; `run()` places it then.
            host = host_of(self)
            job_rules.prepare_rerun(st, time.time(), host.host_id, host.address)
            self._transition(COMPUTE_STATUS_PLACING)
            return
        if kind == "stopped":
            kind = {"cancelled": "cancelled", "walltime": "walltime", "memory": "memory"}.get(
                outcome.stop_reason, "host-restart"
            )
        elif kind == "lost":
            kind = "killed"
        if kind == "cancelled":
            self._final(COMPUTE_STATUS_CANCELLED, "cancelled", "cancelled")
            return
        error = outcome.error or f"job ended: {kind}"
        if kind == "walltime":
            error = f"walltime of {st.walltime_seconds:g}s exceeded; the job was stopped"
        self._failed(kind, error)

    def _on_checkpoint(self, args: dict[str, Any]) -> None:
        st = self.state
        if args.get("lease_id") != st.slot_lease_id:
            return
        st.checkpoint_state = bytes(args.get("state") or b"")
        job_rules.merge_app_state(st, st.checkpoint_state)
        self._index()
        self.checkpoint()

    def _on_progress(self, args: dict[str, Any]) -> None:
        self.state.progress = float(args.get("fraction") or 0.0)
        self.state.progress_text = str(args.get("text") or "")

    def _on_notify(self, args: dict[str, Any]) -> bool:
        return self.notify_user(
            str(args.get("severity", "info")),
            str(args.get("title", "")),
            str(args.get("message", "")),
            job_id=args.get("job_id"),
        )

    def _on_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        st = self.state
        if st.compute_status in TERMINAL:
            return {"compute_status": st.compute_status}
        rt = self.runtime
        running = st.compute_status == COMPUTE_STATUS_RUNNING and st.slot_lease_id
        if running and rt.supervisor.running(st.slot_lease_id):
            rt.call(
                rt.scheduler.cancel,
                CancelSlotRequestsRequest(
                    agent_ids=(self.agent_id,),
                    include_running=True,
                    kill_grace_seconds=float(args.get("grace", rt.config.kill_grace_seconds)),
                ),
            )
            return {"compute_status": st.compute_status, "stopping": True}
        if not args.get("from_scheduler"):
            rt.call(rt.scheduler.cancel, CancelSlotRequestsRequest(agent_ids=(self.agent_id,)))
        self._release_hold(st.hold_id, st.selected_host_url)
        self._final(COMPUTE_STATUS_CANCELLED, "cancelled", str(args.get("reason") or "cancelled"))
        return {"compute_status": st.compute_status}

    def _on_redirect(self, args: dict[str, Any]) -> None:
        st = self.state
        if st.compute_status not in (COMPUTE_STATUS_PLACING, COMPUTE_STATUS_WAITING_FOR_SLOT):
            return
        host = host_of(self)
        now = time.time()
        st.redirect_count += 1
        st.last_redirect_at = now
        st.last_redirect_from_host_url = host.address
        st.redirect_history = (*st.redirect_history, RedirectHop(host.host_id, host.address, now))
        self._move_to(
            str(args["target_url"]),
            str(args.get("target_host_id", "")),
            str(args.get("hold_id", "")),
        )

    def _on_status(self, _args: dict[str, Any]) -> dict[str, Any]:
        st = self.state
        return {
            "agent_id": self.agent_id,
            "job_id": self.compute_job_id(),
            "compute_status": st.compute_status,
            "status": st.status,
            "attempt": st.attempt,
            "host_name": host_of(self).name,
            "compute_error": st.compute_error,
            "placement_note": st.placement_note,
            "next_attempt_at": st.next_attempt_at,
            "progress": st.progress,
        }
