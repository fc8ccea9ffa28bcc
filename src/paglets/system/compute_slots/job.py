"""`ComputeJobPaglet`: a job that finds a host with free resources, waits for its slot,
runs `run_compute_job()` in a job process and reports (jobs.md §3).

The paglet lives in the host process (a queued job costs kilobytes); only
`run_compute_job()` runs in the job process (`job_process.py`). Its life is a state
machine driven by messages to itself, one turn at a time, so a grant, an exit, a cancel
and the job's own steps never overlap:

* `run()` (after create, arrival, activation, recovery) only sends `compute_advance`;
* `NEW`: validate, take the restart snapshot, set `first_submitted_at`, go `PLACING`;
* `PLACING`: candidates from the local gossip table, holds on the best two, then run
  here, queue here, or move to the chosen host (exactly once) and convert the hold there;
  nothing now: asleep until `next_attempt_at` (10 s doubling to 5 min);
* `WAITING_FOR_SLOT`: deactivated; the grant (`compute_slot_grant`) activates it, a
  durable 300 s timer re-confirms its place;
* `RUNNING`: the supervisor runs the process; `compute_job_exit` ends it: success takes
  the final state over in one step, a failure is retried with backoff or is final;
* `compute_cancel` ends any non-terminal state as `CANCELLED`.

Each transition is checkpointed (and written to `job_index`) before the job acts on it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ClassVar

import msgspec

from paglets.core.agent import Paglet
from paglets.core.errors import PagletError
from paglets.core.messages import Message
from paglets.core.runtime_values import ServiceScope
from paglets.system.host_access import host_of

from . import job_rules
from .catalog import CandidateHost, JobIndexRow
from .host_slots import SlotsRuntime, slots_runtime
from .job_index import delete_row, put_row
from .job_messages import SYSTEM_MESSAGES, JobMessages
from .job_state import ComputeJobState
from .models import (
    COMPUTE_STATUS_COMPLETED,
    COMPUTE_STATUS_FAILED_FINAL,
    COMPUTE_STATUS_NEW,
    COMPUTE_STATUS_PLACING,
    COMPUTE_STATUS_RUNNING,
    COMPUTE_STATUS_WAITING_FOR_SLOT,
    DECISION_REDIRECT,
    DECISION_RUN_NOW,
    DECISION_SLEEP,
    CancelSlotRequestsRequest,
    RedirectHop,
    SlotDecisionReply,
    SlotLease,
)

__all__ = ["ComputeJobPaglet", "ComputeJobState"]

_log = logging.getLogger("paglets.compute.jobs")

WAIT_CONFIRM_SECONDS = 300.0
PLACE_RETRY_MIN, PLACE_RETRY_MAX = 10.0, 300.0
SHORT_SLEEP = 2.0  # waits shorter than this use a timer, not a deactivation


def _class_name(cls: type) -> str:
    """`module:qualname` for listings (also for a class of `__main__`, which only a
    thread-isolated job can use)."""
    return f"{cls.__module__}:{cls.__qualname__}"


class ComputeJobPaglet(JobMessages, Paglet[ComputeJobState]):
    """Subclass it, set `State` to a `ComputeJobState` subclass, implement
    `run_compute_job()`, and create it on the submitting host."""

    State = ComputeJobState
    COMPUTE_ISOLATION: ClassVar[str] = "process"
    _job_context: Any = None

    # -- identity and the job-process side -----------------------------------------------

    def compute_job_id(self) -> str:
        """The scheduler's id of this job: `compute-job-<agent_id>`."""
        return f"compute-job-{self.agent_id}"

    @property
    def context(self) -> Any:  # type: ignore[override]
        job = self._job_context
        return job if job is not None else super().context

    def cancel_requested(self) -> bool:
        """Inside `run_compute_job()`: True once the host asked the job to stop (the
        cooperative cancel of `COMPUTE_ISOLATION = "thread"`)."""
        job = self._job_context
        return bool(job is not None and job.cancel_requested())

    # -- hooks (jobs.md §3.3) ---------------------------------------------------------------

    def run_compute_job(self) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must implement run_compute_job()")

    def after_compute_success(self) -> None:
        self.continue_after_compute_success()

    def continue_after_compute_success(self) -> None:
        return None

    def after_compute_failure(self, message: str) -> None:
        return None

    def handle_compute_job_message(self, message: Message) -> Any:
        return None

    def compute_usage_paths(self) -> list[str]:
        return []

    def validate_compute_estimates(self) -> str | None:
        return job_rules.validate_estimates(self.state)

    def accept_compute_candidate(self, candidate: CandidateHost) -> bool:
        st = self.state
        if st.allow_home_compute or not st.home_host_id:
            return True
        return candidate.host_id != st.home_host_id

    def compute_failure_is_retryable(self, kind: str, error: str) -> bool:
        return job_rules.default_retryable(self.state, kind)

    def notify_user(
        self,
        severity: str,
        title: str,
        message: str,
        job_id: str | None = None,
        timeout: float | None = None,
        scope: ServiceScope = ServiceScope.MESH,
    ) -> bool:
        """Output for the submitter (jobs.md §6): recorded as a `user-info.notify` event
        on this host; in the job process it is forwarded to the host."""
        job = self._job_context
        if job is not None:
            return bool(job.notify_user(severity, title, message, job_id=job_id))
        from paglets.system.user_info.contract import NOTIFY, USER_INFO, UserInfoRequest

        st = self.state
        host = host_of(self)
        request = UserInfoRequest(
            severity=severity,
            title=title,
            message=message,
            source_agent_id=self.agent_id,
            job_id=job_id or self.compute_job_id(),
            timestamp=time.time(),
            group_id=str(getattr(st, "group_id", "") or ""),
            home_host_id=st.home_host_id,
        )
        try:  # recorded here and forwarded durably to user-info on the home host
            handle = self.require_contract(USER_INFO)
            return bool(handle.call(NOTIFY, request, timeout=timeout or 5.0).accepted)
        except PagletError:  # no user-info here: the local event log still has it
            data = msgspec.to_builtins(request)
            data["job"] = data.pop("job_id")
            host.events.emit("user-info.notify", agent_id=self.agent_id, data=data)
            return True

    # -- lifecycle -------------------------------------------------------------------------

    def on_creation(self, event: Any) -> None:
        host = host_of(self)  # home first, by host id (jobs.md §3.7)
        st = self.state
        st.home_host_id, st.home_host_name, st.home_host_url = host.host_id, host.name, host.address
        self._index()

    def on_arrival(self, event: Any) -> None:
        self._index()

    def on_dispatching(self, event: Any) -> None:
        delete_row(host_of(self), self.agent_id)

    def on_disposing(self, event: Any) -> None:
        delete_row(host_of(self), self.agent_id)

    def run(self) -> None:
        self._kick()

    # -- messages --------------------------------------------------------------------------

    def handle_message(self, message: Message) -> Any:
        name = SYSTEM_MESSAGES.get(message.kind)
        if name is not None:
            return getattr(self, name)(dict(message.args or {}))
        result = self.handle_compute_job_message(message)
        return self.not_handled() if result is None else result

    # -- the state machine -----------------------------------------------------------------

    @property
    def runtime(self) -> SlotsRuntime:
        return slots_runtime(host_of(self))

    def _kick(self, delay: float = 0.0) -> None:
        def send() -> None:
            try:
                host_of(self).proxy(self.agent_id).send_oneway(Message("compute_advance"))
            except PagletError as exc:
                _log.debug("compute job %s not advanced: %s", self.agent_id, exc)

        if delay > 0:
            timer = threading.Timer(delay, send)
            timer.daemon = True
            timer.start()
        else:
            send()

    def _index(self) -> None:
        st = self.state
        host = host_of(self)
        put_row(
            host,
            JobIndexRow(
                job_id=self.compute_job_id(),
                agent_id=self.agent_id,
                kind="job",
                agent_class=_class_name(type(self)),
                host_id=host.host_id,
                host_name=host.name,
                compute_status=st.compute_status,
                status=st.status,
                group_id=str(getattr(st, "group_id", "") or ""),
                job_key=str(getattr(st, "job_key", "") or ""),
                owner=st.owner,
                attempt=st.attempt,
                active=True,
                since=time.time(),
            ),
        )

    def _transition(self, status: str) -> None:
        self.state.compute_status = status
        self._index()
        self.checkpoint()

    def _advance(self) -> None:
        st = self.state
        if self.departed:
            return
        if st.compute_status == COMPUTE_STATUS_NEW:
            self._leave_new()
        status = st.compute_status
        if status == COMPUTE_STATUS_PLACING:
            self._place()
        elif status == COMPUTE_STATUS_WAITING_FOR_SLOT:
            self._confirm_waiting()
        elif status == COMPUTE_STATUS_RUNNING:
            self._resume_running()
        elif status == COMPUTE_STATUS_COMPLETED:
            self._success()

    def _leave_new(self) -> None:
        st = self.state
        problem = self.validate_compute_estimates()
        if problem is not None:
            self._final(COMPUTE_STATUS_FAILED_FINAL, "invalid", problem)
            return
        now = time.time()
        st.first_submitted_at = st.first_submitted_at or now
        st.placing_since = now
        st.slot_request_id = st.slot_request_id or job_rules.new_request_id()
        if not st.restart_initial_state:
            st.restart_initial_state = job_rules.take_snapshot(st)
        self._transition(COMPUTE_STATUS_PLACING)

    def _request(self, *, hold_id: str = "", hold_only: bool = False) -> Any:
        return job_rules.slot_request(
            self.state,
            job_id=self.compute_job_id(),
            agent_id=self.agent_id,
            agent_class=_class_name(type(self)),
            hold_id=hold_id,
            hold_only=hold_only,
        )

    def _place(self) -> None:
        from .job_flow import place

        place(self)

    def _confirm_waiting(self) -> None:
        st = self.state
        rt = self.runtime
        now = time.time()
        if st.queue_timeout_seconds > 0 and now - st.queued_since >= st.queue_timeout_seconds:
            rt.call(rt.scheduler.cancel, CancelSlotRequestsRequest(agent_ids=(self.agent_id,)))
            self._final(
                COMPUTE_STATUS_FAILED_FINAL,
                "queue-timeout",
                f"waited {now - st.queued_since:.0f}s for a slot (queue_timeout_seconds="
                f"{st.queue_timeout_seconds:g})",
            )
            return
        self._decided(rt.call(rt.scheduler.request_slot, self._request()))

    def _decided(self, reply: SlotDecisionReply) -> None:
        """The local scheduler's answer to this job's `request_slot`."""
        st = self.state
        now = time.time()
        if reply.decision == DECISION_RUN_NOW and reply.lease is not None:
            self._start(reply.lease)
        elif reply.decision == DECISION_SLEEP:
            if st.compute_status != COMPUTE_STATUS_WAITING_FOR_SLOT:
                st.queued_since = now
            st.placement_note = "; ".join(r.message for r in reply.reasons[:2])
            self._transition(COMPUTE_STATUS_WAITING_FOR_SLOT)
            wake = now + WAIT_CONFIRM_SECONDS
            if st.queue_timeout_seconds > 0:
                wake = min(wake, st.queued_since + st.queue_timeout_seconds)
            self._sleep_until(wake)
        elif reply.decision == DECISION_REDIRECT:  # place again: another host can
            host = host_of(self)  # not back here within the cooldown
            st.redirect_history = (
                *st.redirect_history,
                RedirectHop(host.host_id, host.address, now),
            )
            st.placement_note = reply.message
            self._transition(COMPUTE_STATUS_PLACING)
            self._kick(0.5)
        elif st.wait_for_capable_host:
            st.placement_note = reply.message
            self._wait_placing(reply.message)
        else:
            self._final(COMPUTE_STATUS_FAILED_FINAL, "no-capable-host", reply.message)

    def _start(self, lease: SlotLease) -> None:
        st = self.state
        host = host_of(self)
        st.slot_lease_id = lease.lease_id
        st.slot_request_id = lease.request_id
        st.cpu_core_ids, st.gpu_ids = lease.cpu_core_ids, lease.gpu_ids
        st.cpu_affinity_supported = lease.cpu_affinity_supported
        st.started_at = time.time()
        st.hold_id = st.placement_note = ""
        st.selected_host_url, st.selected_host_id = host.address, host.host_id
        if host.name not in st.log_hosts:
            st.log_hosts = (*st.log_hosts, host.name)
        self._transition(COMPUTE_STATUS_RUNNING)
        self.runtime.supervisor.start(self, lease, work_dir=self.work_dir(), attempt=st.attempt)

    def _resume_running(self) -> None:
        st = self.state
        rt = self.runtime
        if rt.supervisor.handle(st.slot_lease_id) is not None:
            return  # running, or its exit is on the way
        lease = rt.call(
            lambda: next((x for x in rt.scheduler.leases() if x.lease_id == st.slot_lease_id), None)
        )
        if lease is not None and lease.status == "GRANTED":
            self._start(lease)
            return
        if self._gracefully_stopped(rt, st.slot_lease_id):  # jobs.md §3.7: no attempt used
            host = host_of(self)
            job_rules.prepare_rerun(st, time.time(), host.host_id, host.address)
            self._transition(COMPUTE_STATUS_PLACING)
            self._kick()
            return
        if not st.restart_running_on_host_startup:
            self._final(
                COMPUTE_STATUS_FAILED_FINAL, "host-restart", "the host restarted while the job ran"
            )
            return
        self._failed("host-restart", "the host restarted while the job ran")

    def _gracefully_stopped(self, rt: SlotsRuntime, lease_id: str) -> bool:
        """Whether this host ended `lease_id` by a graceful stop (its exit did not reach
        this paglet before the host stopped)."""
        if not lease_id:
            return False
        rows = rt.call(lambda: rt.scheduler.history(job_id=self.compute_job_id(), limit=10))
        return any(r.lease_id == lease_id and r.finish_reason == "graceful-stop" for r in rows)

    def _success(self) -> None:
        st = self.state
        if st.success_handled:
            self.continue_after_compute_success()
            return
        st.success_handled = True
        self.checkpoint()
        self.after_compute_success()

    def _failed(self, kind: str, error: str) -> None:
        st = self.state
        retry = kind not in job_rules.FINAL_KINDS and self.compute_failure_is_retryable(kind, error)
        if retry and st.attempt < st.max_attempts:
            now = time.time()
            job_rules.prepare_retry(st, kind, error, host_of(self).host_id, now)
            self._transition(COMPUTE_STATUS_PLACING)
            self._sleep_until(st.next_attempt_at)
            return
        if retry:
            error = f"{error} (attempt {st.attempt} of {st.max_attempts})"
        self._final(COMPUTE_STATUS_FAILED_FINAL, kind, error)

    def _final(self, status: str, kind: str, error: str) -> None:
        st = self.state
        st.compute_error = error
        st.compute_failure_kind = kind
        st.finished_at = time.time()
        st.slot_lease_id = ""
        self._transition(status)
        try:
            self.after_compute_failure(error)
        except Exception:
            _log.exception("after_compute_failure of %s failed", self.agent_id)

    def _wait_placing(self, note: str, *, retry_in: float | None = None) -> None:
        """Nothing now: stay PLACING, asleep until the next attempt (10 s doubling to
        5 min, or `retry_in`), or fail at `placement_timeout_seconds`."""
        st = self.state
        now = time.time()
        if now - (st.placing_since or now) >= st.placement_timeout_seconds:
            self._final(
                COMPUTE_STATUS_FAILED_FINAL,
                "placement-timeout",
                f"no host took the job within {st.placement_timeout_seconds:g}s: {note}",
            )
            return
        if retry_in is not None:
            delay = retry_in
        else:
            st.placement_attempts += 1
            delay = min(PLACE_RETRY_MAX, PLACE_RETRY_MIN * 2 ** (st.placement_attempts - 1))
        st.next_attempt_at = now + delay
        st.placement_note = note
        self._transition(COMPUTE_STATUS_PLACING)
        self._sleep_until(st.next_attempt_at)

    def _sleep_until(self, at: float) -> None:
        delay = at - time.time()
        if delay <= SHORT_SLEEP:
            self._kick(max(0.0, delay))
            return
        status = self.state.compute_status
        try:
            host_of(self).proxy(self.agent_id).send_oneway(
                Message("compute_sleep", {"status": status, "at": at})
            )
        except PagletError:
            self._kick(delay)

    def _move_to(self, url: str, host_id: str, hold_id: str) -> None:
        from .job_flow import move_to

        move_to(self, url, host_id, hold_id)

    def _release_hold(self, hold_id: str, url: str) -> None:
        from .job_flow import release_hold

        release_hold(self, hold_id, url)
