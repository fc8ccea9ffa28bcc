"""`ResultCollectorPaglet` (jobs.md §4.2-§4.5): gathers a job group's reports, exactly once.

The collector is the group's durable record. It checkpoints after every message
(`CHECKPOINT = "always"`), so an acknowledgement it sends means the report is on disk and
the job may dispose itself. Reports are de-duplicated by `job_key` (first accepted wins,
`group_models.accept_report`). A background loop (`run`) enforces deadlines, repeats
cancels that did not reach their member yet, and takes the group home when it is complete.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from paglets.core.agent import Paglet, PagletState
from paglets.core.errors import PagletError, StorageQuotaError
from paglets.core.events import CreationEvent, MobilityEvent, PersistencyEvent
from paglets.core.messages import Message
from paglets.system.compute_slots.group_models import (
    GROUP_ACTIVE,
    GROUP_CANCELLED,
    GROUP_COMPLETE,
    GROUP_RETURNING_HOME,
    GROUP_WAITING_FOR_HOME,
    MEMBER_CANCELLED,
    MEMBER_CREATED,
    MEMBER_FAILED,
    MEMBER_LOST,
    MEMBER_TIMED_OUT,
    GroupMember,
    accept_report,
    apply_progress,
    is_complete,
    member_from_registration,
    merge_registration,
    summary_payload,
)
from paglets.system.host_access import host_of

__all__ = [
    "COMPUTE_CANCEL_MESSAGE",
    "GROUP_DONE_TITLE",
    "ResultCollectorPaglet",
    "ResultCollectorState",
]

log = logging.getLogger(__name__)
_loop_lock = threading.Lock()

COMPUTE_CANCEL_MESSAGE = "compute_cancel"
GROUP_DONE_TITLE = "compute-group.done"
CANCEL_SETTLE_SECONDS = 300.0  # after a cancel, the group is CANCELLED at the latest then
CANCEL_RESEND_SECONDS = 10.0
TICK_SECONDS = 0.5
POLL_EVERY_SECONDS = 60.0
SILENT_SECONDS = 15 * 60.0


@dataclass
class ResultCollectorState(PagletState):
    """The group's durable record. `members` is keyed by `job_key`."""

    group_id: str = ""
    status: str = GROUP_ACTIVE
    final_status: str = ""  # COMPLETE or CANCELLED once reached; kept while going home
    owner: str = ""
    job_class: str = ""
    home_host_id: str = ""
    home_host_name: str = ""
    home_host_url: str = ""
    created_at: float = 0.0
    completed_at: float = 0.0
    return_home_when_complete: bool = False
    return_home_artifact_bytes: int = 1 << 30  # 0 none, -1 all
    home_check_seconds: float = 300.0
    next_home_check_at: float = 0.0
    artifact_policy: str = "push"  # push | keep
    deadline_seconds: float = 0.0
    deadline_at: float = 0.0
    member_timeout_seconds: float = 0.0
    lost_after_seconds: float = 6 * 3600.0
    max_group_retries: int = 0
    group_retries: int = 0
    cancel_requested_at: float = 0.0
    cancel_kill_running: bool = True
    cancel_pending: list[str] = field(default_factory=list)  # keys not yet told
    next_cancel_send_at: float = 0.0
    members: dict[str, GroupMember] = field(default_factory=dict)
    duplicate_reports: list[dict[str, Any]] = field(default_factory=list)
    done_notified: bool = False
    last_error: str = ""


class ResultCollectorPaglet(Paglet[ResultCollectorState]):
    """Collects `job_result` / `job_failure` reports of one job group (jobs.md §4.2)."""

    State = ResultCollectorState
    CHECKPOINT: ClassVar[str] = "always"

    _wake: threading.Event | None = None
    _loop_thread: threading.Thread | None = None
    _next_poll_at: float = 0.0

    # -- lifecycle -------------------------------------------------------------------

    def on_creation(self, event: CreationEvent) -> None:
        state = self.state
        now = time.time()
        state.created_at = state.created_at or now
        if state.deadline_seconds > 0 and not state.deadline_at:
            state.deadline_at = state.created_at + state.deadline_seconds
        if state.artifact_policy not in ("push", "keep"):
            raise ValueError(
                f"ResultCollectorState.artifact_policy must be 'push' or 'keep', "
                f"got {state.artifact_policy!r}"
            )
        self._index()

    def on_arrival(self, event: MobilityEvent) -> None:
        self._index()
        self._poke()

    def on_activation(self, event: PersistencyEvent) -> None:
        self._poke()

    def on_dispatching(self, event: MobilityEvent) -> None:
        from paglets.system.compute_slots.job_index import delete_row

        with contextlib.suppress(Exception):
            delete_row(host_of(self), self.agent_id)

    def on_disposing(self, event: PersistencyEvent) -> None:
        from paglets.system.compute_slots.job_index import delete_row

        with contextlib.suppress(Exception):
            delete_row(host_of(self), self.agent_id)

    def _index(self) -> None:
        """The collector's `job_index` row (what `jobs ps` lists), at each status change."""
        from paglets.serialization.names import qualified_name
        from paglets.system.compute_slots.catalog import JobIndexRow
        from paglets.system.compute_slots.job_index import put_row

        host = host_of(self)
        state = self.state
        with contextlib.suppress(Exception):
            put_row(
                host,
                JobIndexRow(
                    job_id=f"collector-{state.group_id}",
                    agent_id=self.agent_id,
                    kind="collector",
                    agent_class=qualified_name(type(self)),
                    host_id=host.host_id,
                    host_name=host.name,
                    compute_status=state.status,
                    status=state.status,
                    group_id=state.group_id,
                    owner=state.owner,
                    active=True,
                    since=time.time(),
                ),
            )

    def _poke(self) -> None:
        """Wake the background loop; start it again if it had ended (a settled group that
        a message made active again, e.g. `retry_failed`)."""
        with _loop_lock:
            wake = self._wake
            if wake is None:
                wake = self._wake = threading.Event()
            wake.set()
            thread = self._loop_thread
            restart = (
                thread is not None
                and not thread.is_alive()
                and not self.departed
                and not self._settled()
            )
            if restart:
                thread = self._loop_thread = threading.Thread(
                    target=self._loop, daemon=True, name=f"collector-{self.agent_id[-8:]}"
                )
                thread.start()

    def _settled(self) -> bool:
        """Nothing left for the loop: final status announced, no cancel to repeat."""
        state = self.state
        return (
            state.status in (GROUP_COMPLETE, GROUP_CANCELLED)
            and state.done_notified
            and not state.cancel_pending
        )

    # -- messages --------------------------------------------------------------------

    def handle_message(self, message: Message) -> Any:
        handler = self._HANDLERS.get(message.kind)
        if handler is None:
            return self.not_handled()
        return handler(self, dict(message.args or {}))

    def _register_jobs(self, args: dict[str, Any]) -> dict[str, Any]:
        jobs = args.get("jobs") or []
        if not isinstance(jobs, list):
            raise ValueError(f"register_jobs: jobs must be a list, got {type(jobs).__name__}")
        now = time.time()
        with self.locked_state() as state:
            if args.get("job_class") and not state.job_class:
                state.job_class = str(args["job_class"])
            for entry in jobs:
                key = entry.get("job_key") if isinstance(entry, dict) else None
                member = state.members.get(key) if isinstance(key, str) else None
                if member is None:
                    member = member_from_registration(entry, now)
                    state.members[member.job_key] = member
                else:
                    merge_registration(member, entry)
                if not member.job_class:
                    member.job_class = state.job_class
        return {"registered": len(jobs), "expected": len(self.state.members)}

    def _job_progress(self, args: dict[str, Any]) -> dict[str, Any]:
        key = str(args.get("job_key") or "")
        with self.locked_state() as state:
            member = state.members.get(key)
            if member is None:
                member = state.members[key] = GroupMember(job_key=key, registered_at=time.time())
            changed = apply_progress(member, args, time.time())
        return {"ok": True, "changed": changed}

    def _job_result(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._report(args, failure=False)

    def _job_failure(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._report(args, failure=True)

    def _report(self, args: dict[str, Any], *, failure: bool) -> dict[str, Any]:
        group = args.get("group_id")
        if group and self.state.group_id and group != self.state.group_id:
            raise ValueError(
                f"report for group {group!r} sent to the collector of {self.state.group_id!r}"
            )
        with self.locked_state() as state:
            outcome = accept_report(state.members, state.duplicate_reports, args, failure=failure)
            member = state.members[str(args["job_key"])]
            if member.job_key in state.cancel_pending and member.terminal:
                state.cancel_pending.remove(member.job_key)
        if outcome.newly_accepted and self.state.artifact_policy == "push":
            self._pull_artifacts(member)
        self._poke()
        return outcome.to_wire()

    def _summary(self, args: dict[str, Any]) -> dict[str, Any]:
        offset = int(args.get("offset") or 0)
        limit_arg = args.get("limit")
        limit = 100 if limit_arg is None else int(limit_arg)
        with self.locked():
            return summary_payload(
                self._group_fields(),
                self.state.members,
                offset=offset,
                limit=limit,
                details=bool(args.get("details")),
                home_host_id=self.state.home_host_id,
                home_host_url=self.state.home_host_url,
            )

    def _group_fields(self) -> dict[str, Any]:
        state = self.state
        host = host_of(self)
        return {
            "group_id": state.group_id,
            "status": state.status,
            "owner": state.owner,
            "job_class": state.job_class,
            "collector_agent_id": self.agent_id,
            "collector_host_name": host.name,
            "collector_host_url": host.address,
            "home_host_id": state.home_host_id,
            "home_host_name": state.home_host_name,
            "home_host_url": state.home_host_url,
            "at_home": self._at_home(),
            "return_home_when_complete": state.return_home_when_complete,
            "waiting_for_home": state.status == GROUP_WAITING_FOR_HOME,
            "artifact_policy": state.artifact_policy,
            "deadline_at": state.deadline_at,
            "member_timeout_seconds": state.member_timeout_seconds,
            "created_at": state.created_at,
            "completed_at": state.completed_at,
            "group_retries": state.group_retries,
            "max_group_retries": state.max_group_retries,
            "duplicate_reports": len(state.duplicate_reports),
            "cancel_requested_at": state.cancel_requested_at,
            "last_error": state.last_error,
        }

    def _return_home(self, args: dict[str, Any]) -> dict[str, Any]:
        with self.locked_state() as state:
            state.next_home_check_at = time.time()  # due now: try even without membership
        self._poke()
        return {"status": self.state.status, "at_home": self._at_home()}

    def _cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        kill_running = bool(args.get("kill_running", True))
        now = time.time()
        with self.locked_state() as state:
            if not state.cancel_requested_at:
                state.cancel_requested_at = now
            state.cancel_kill_running = kill_running
            pending = [k for k, m in state.members.items() if not m.terminal]
            state.cancel_pending = sorted(set(state.cancel_pending) | set(pending))
            state.next_cancel_send_at = 0.0
        self._send_cancels()
        self._cancel_slot_requests(kill_running)
        self._poke()
        return {"cancelling": len(pending), "status": self.state.status}

    def _retry_failed(self, args: dict[str, Any]) -> dict[str, Any]:
        states = {MEMBER_FAILED}
        if args.get("include_lost"):
            states.add(MEMBER_LOST)
        if args.get("include_timed_out"):
            states.add(MEMBER_TIMED_OUT)
        if args.get("include_cancelled"):
            states.add(MEMBER_CANCELLED)
        keys = args.get("keys")
        with self.locked():
            state = self.state
            if keys:
                unknown = [k for k in keys if k not in state.members]
                if unknown:
                    raise ValueError(f"retry_failed: unknown job keys {unknown}")
                chosen = [state.members[k] for k in keys if state.members[k].terminal]
            else:
                chosen = [m for m in state.members.values() if m.state in states]
            if not chosen:
                return {"recreated": [], "errors": []}
            if state.max_group_retries and state.group_retries >= state.max_group_retries:
                raise PagletError(
                    f"group {state.group_id} was already retried {state.group_retries} times "
                    f"(max_group_retries={state.max_group_retries}); submit a new group instead"
                )
        recreated: list[dict[str, str]] = []
        errors: list[dict[str, str]] = []
        for member in chosen:
            try:
                agent_id = self._recreate(member)
            except Exception as exc:
                errors.append({"job_key": member.job_key, "error": f"{type(exc).__name__}: {exc}"})
            else:
                recreated.append({"job_key": member.job_key, "agent_id": agent_id})
        if recreated:
            with self.locked_state() as state:
                state.group_retries += 1
                if state.status != GROUP_ACTIVE:
                    state.status = GROUP_ACTIVE
                    state.final_status = ""
                    state.completed_at = 0.0
                    state.done_notified = False
            self._poke()
        return {"recreated": recreated, "errors": errors}

    def _artifacts(self, args: dict[str, Any]) -> dict[str, Any]:
        host = host_of(self)
        rows = []
        with self.locked():
            for member in self.state.members.values():
                held = set(member.at_collector)
                for ref in member.artifacts:
                    rows.append(
                        {
                            "job_key": member.job_key,
                            "ref": dict(ref),
                            "host_name": ref.get("host_name") or "",
                            "host_url": ref.get("host_url") or "",
                            "at_collector": ref.get("artifact_id") in held
                            or host.is_local_url(str(ref.get("host_url") or "")),
                        }
                    )
        return {"group_id": self.state.group_id, "artifacts": rows}

    _HANDLERS: ClassVar[dict[str, Any]] = {
        "register_jobs": _register_jobs,
        "job_progress": _job_progress,
        "job_result": _job_result,
        "job_failure": _job_failure,
        "summary": _summary,
        "return_home": _return_home,
        "cancel": _cancel,
        "retry_failed": _retry_failed,
        "artifacts": _artifacts,
    }

    # -- artifacts -------------------------------------------------------------------

    def _pull_artifacts(self, member: GroupMember) -> None:
        """`push` policy: bring the member's artifacts to this host, then delete the
        compute host's copies. A full store or an unreachable host leaves them in place
        (still listed, with their host)."""
        host = host_of(self)
        for index, ref in enumerate(list(member.artifacts)):
            if host.is_local_url(str(ref.get("host_url") or "")):
                with self.locked_state():
                    if ref.get("artifact_id") not in member.at_collector:
                        member.at_collector.append(str(ref.get("artifact_id")))
                continue
            moved = self._fetch_here(ref)
            if moved is None:
                continue
            with self.locked_state():
                member.artifacts[index] = moved
                if moved["artifact_id"] not in member.at_collector:
                    member.at_collector.append(moved["artifact_id"])

    def _fetch_here(self, ref: dict[str, Any]) -> dict[str, Any] | None:
        host = host_of(self)
        if not ref.get("artifact_id") or host.is_local_url(str(ref.get("host_url") or "")):
            return None
        spool = self.context.work_dir() / "incoming"
        spool.mkdir(parents=True, exist_ok=True)
        target = spool / f"{ref['artifact_id']}.bin"
        try:
            self.context.download_artifact(ref, target)
            stored = host.artifacts.put_file(
                target,
                name=ref.get("name") or None,
                owner_agent_id=self.agent_id,
                compression=str(ref.get("compression") or ""),
                sha256=ref.get("sha256") or None,
                move=True,
            )
        except StorageQuotaError:
            log.warning("collector %s: store full, artifact %s left in place", self.agent_id, ref)
            return None
        except Exception:
            log.info("collector %s: artifact %s not fetched", self.agent_id, ref, exc_info=True)
            return None
        finally:
            with contextlib.suppress(OSError):
                target.unlink()
        with contextlib.suppress(Exception):
            self.context.delete_artifact(ref)
        wire = stored.to_wire()
        wire.update(host_url=host.address, host_name=host.name, host_id=host.host_id)
        return wire

    # -- cancel and retry ------------------------------------------------------------

    def _send_cancels(self) -> None:
        """One-way `compute_cancel` to every member still pending it; a member that could
        not be reached is tried again every 10 s (its host may come back)."""
        with self.locked():
            pending = [self.state.members[k] for k in self.state.cancel_pending]
            kill = self.state.cancel_kill_running
        reached: list[str] = []
        for member in pending:
            if member.terminal:
                reached.append(member.job_key)
                continue
            if not member.agent_id:
                continue
            try:
                proxy = self.context.get_proxy(
                    member.agent_id, member.host_url or self.state.home_host_url or None
                )
                if proxy is None:
                    continue
                proxy.send_oneway(
                    Message(
                        COMPUTE_CANCEL_MESSAGE,
                        {"group_id": self.state.group_id, "kill_running": kill},
                    ),
                    durable=True,
                    timeout=5.0,
                )
            except Exception:
                log.debug("compute_cancel to %s not delivered yet", member.job_key, exc_info=True)
                continue
            reached.append(member.job_key)
        with self.locked_state() as state:
            state.cancel_pending = [k for k in state.cancel_pending if k not in reached]
            state.next_cancel_send_at = time.time() + CANCEL_RESEND_SECONDS

    def _cancel_slot_requests(self, kill_running: bool) -> None:
        """Ask every host's `compute-slots` to drop the group's queued (and, with
        `kill_running`, running) requests, in parallel; best effort."""
        from paglets.system.compute_slots.models import CANCEL_SLOT_REQUESTS

        host = host_of(self)
        payload = {"group_ids": [self.state.group_id], "include_running": kill_running}
        threads = []
        for ref in host.list_hosts(online_only=True):

            def call(url: str = ref.url) -> None:
                with contextlib.suppress(Exception):
                    proxy = self.context.get_proxy("service.compute-slots", url)
                    if proxy is not None:
                        proxy.send(Message(CANCEL_SLOT_REQUESTS, payload), timeout=5.0)

            thread = threading.Thread(target=call, daemon=True, name="collector-cancel")
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(6.0)

    def _recreate(self, member: GroupMember) -> str:
        """Create a fresh copy of a member from its registered initial state, here."""
        from paglets.serialization import codec
        from paglets.serialization.names import resolve_qualified_name as resolve_class

        job_class = member.job_class or self.state.job_class
        if not member.initial_state or not member.state_class or not job_class:
            raise PagletError(
                f"job {member.job_key} has no registered initial state (it was over 64 KiB "
                "or registered without one); submit it again instead"
            )
        state_cls = resolve_class(member.state_class)
        job_state = codec.decode_state(state_cls, base64.b64decode(member.initial_state))
        names = {f.name for f in fields(job_state)}
        if "attempt" in names:
            job_state.attempt = max(int(getattr(job_state, "attempt", 0) or 0), member.attempt) + 1
        host = host_of(self)
        fresh = {
            "report_id": "",
            "collector_agent_id": self.agent_id,
            "collector_host_url": host.address,
            "collector_host_id": host.host_id,
        }
        for name, value in fresh.items():
            if name in names:
                setattr(job_state, name, value)
        proxy = self.context.create_paglet(resolve_class(job_class), job_state)
        with self.locked_state():
            member.agent_id = proxy.agent_id
            member.state = MEMBER_CREATED
            member.report_id = ""
            member.result = None
            member.error = member.kind = member.stage = member.stderr_tail = ""
            member.artifacts = []
            member.at_collector = []
            member.recreations += 1
            member.host_name = host_of(self).name
            member.host_url = host_of(self).address
            member.last_heard_at = time.time()
            member.registered_at = time.time()
            member.finished_at = 0.0
        return proxy.agent_id

    # -- the background loop ---------------------------------------------------------

    def run(self) -> None:
        with _loop_lock:
            self._loop_thread = threading.current_thread()
        self._poke()
        self._loop()

    def _loop(self) -> None:
        """Deadlines, repeated cancels, completion and the way home; ends once the group
        is settled, so a finished collector holds no thread."""
        wake = self._wake
        assert wake is not None
        while not self.departed:
            if self._settled():
                return
            wake.wait(TICK_SECONDS)
            wake.clear()
            if self.departed:
                return
            try:
                self._tick(time.time())
            except Exception as exc:
                if self.departed:
                    return
                log.warning("collector %s: %s", self.agent_id, exc, exc_info=True)
                with contextlib.suppress(Exception), self.locked_state() as state:
                    state.last_error = f"{type(exc).__name__}: {exc}"

    def _tick(self, now: float) -> None:
        state = self.state
        before = state.status
        try:
            self._tick_status(now)
        finally:
            if state.status != before and not self.departed:
                self._index()

    def _tick_status(self, now: float) -> None:
        state = self.state
        if state.status == GROUP_ACTIVE and now >= self._next_poll_at:
            self._next_poll_at = now + POLL_EVERY_SECONDS
            self._poll_silent(now)
        if state.status == GROUP_ACTIVE:
            self._expire(now)
            if state.cancel_pending and now >= state.next_cancel_send_at:
                self._send_cancels()
            self._settle(now)
        if state.status in (GROUP_WAITING_FOR_HOME, GROUP_RETURNING_HOME):
            if self._at_home():
                # Home: artifacts first, so COMPLETE means "everything is here".
                if state.return_home_when_complete:
                    self._bring_artifacts_home()
                with self.locked_state() as s:
                    s.status = s.final_status or GROUP_COMPLETE
            else:
                self._go_home(now)
        if state.status in (GROUP_COMPLETE, GROUP_CANCELLED) and not state.done_notified:
            with self.locked_state() as s:
                s.done_notified = True
            self._notify_done()

    def _poll_silent(self, now: float) -> None:
        """Ask members silent for 15 min for their `status` through their proxies; an
        answer counts as hearing from them (the collector's records decide `lost`)."""
        with self.locked():
            silent = [
                m
                for m in self.state.members.values()
                if not m.terminal and m.agent_id and now - m.last_heard_at >= SILENT_SECONDS
            ]
        for member in silent[:100]:
            try:
                proxy = self.context.get_proxy(
                    member.agent_id, member.host_url or self.state.home_host_url or None
                )
                reply = proxy.send(Message("status"), timeout=5.0) if proxy else None
            except Exception:
                continue
            if isinstance(reply, dict):
                with self.locked_state():
                    apply_progress(member, {**reply, "host_url": ""}, time.time())

    def _expire(self, now: float) -> None:
        """Deadlines and member timeouts cancel and mark pending members `timed_out`;
        members silent longer than `lost_after_seconds` are `lost` (not retried)."""
        timed_out: list[str] = []
        with self.locked_state() as state:
            group_due = bool(state.deadline_at) and now >= state.deadline_at
            for member in state.members.values():
                if member.terminal:
                    continue
                member_due = (
                    state.member_timeout_seconds > 0
                    and now >= member.registered_at + state.member_timeout_seconds
                )
                if group_due or member_due:
                    member.state = MEMBER_TIMED_OUT
                    member.error = "the group's deadline passed" if group_due else "timed out"
                    member.finished_at = now
                    timed_out.append(member.job_key)
                elif (
                    state.lost_after_seconds > 0
                    and now - member.last_heard_at >= state.lost_after_seconds
                ):
                    member.state = MEMBER_LOST
                    member.error = f"silent for {state.lost_after_seconds:.0f}s"
                    member.finished_at = now
            if timed_out:
                state.cancel_pending = sorted(set(state.cancel_pending) | set(timed_out))
                state.next_cancel_send_at = 0.0
        if timed_out:
            self._send_cancels()

    def _settle(self, now: float) -> None:
        """ACTIVE -> complete (or CANCELLED) once every member is terminal."""
        with self.locked_state() as state:
            cancelled = bool(state.cancel_requested_at)
            done = is_complete(state.members)
            if cancelled and not done and now - state.cancel_requested_at >= CANCEL_SETTLE_SECONDS:
                done = True
            if not done:
                return
            state.final_status = GROUP_CANCELLED if cancelled else GROUP_COMPLETE
            state.completed_at = now
            if state.return_home_when_complete and not self._at_home():
                state.status = GROUP_RETURNING_HOME
                state.next_home_check_at = 0.0
            else:
                state.status = state.final_status

    def _at_home(self) -> bool:
        host = host_of(self)
        state = self.state
        if state.home_host_id:
            return host.host_id == state.home_host_id
        return not state.home_host_url or host.is_local_url(state.home_host_url)

    def _home_url_if_alive(self) -> str | None:
        """Home's current URL when membership sees it alive (found by host id first, so a
        laptop with a new address is still home)."""
        state = self.state
        for ref in host_of(self).list_hosts(online_only=True, include_self=False):
            if state.home_host_id and ref.host_id == state.home_host_id:
                return ref.url
            if not state.home_host_id and ref.url.rstrip("/") == state.home_host_url.rstrip("/"):
                return ref.url
        return None

    def _go_home(self, now: float) -> None:
        """Move home once membership sees it alive (read every tick: local and cheap);
        every `home_check_seconds` the last known address is tried anyway, for a home
        that membership has forgotten (it drops dead members after 30 min)."""
        state = self.state
        url = self._home_url_if_alive()
        if url is None and now >= state.next_home_check_at and state.next_home_check_at:
            url = state.home_host_url
        if url is None:
            with self.locked_state() as s:
                s.status = GROUP_WAITING_FOR_HOME
                if not s.next_home_check_at:
                    s.next_home_check_at = now + s.home_check_seconds
            return
        with self.locked_state() as s:
            s.status = GROUP_RETURNING_HOME
            s.home_host_url = url
        try:
            self.dispatch(url)
        except Exception as exc:
            if self.departed:
                return
            log.info("collector %s: move home failed: %s", self.agent_id, exc)
            with self.locked_state() as s:
                s.status = GROUP_WAITING_FOR_HOME
                s.last_error = f"return home: {type(exc).__name__}: {exc}"
                s.next_home_check_at = now + s.home_check_seconds

    def _bring_artifacts_home(self) -> None:
        budget = self.state.return_home_artifact_bytes
        if budget == 0:
            return
        used = 0
        for member in list(self.state.members.values()):
            for index, ref in enumerate(list(member.artifacts)):
                if ref.get("artifact_id") not in member.at_collector:
                    continue
                size = int(ref.get("size_bytes") or 0)
                if budget > 0 and used + size > budget:
                    continue
                moved = self._fetch_here(ref)
                if moved is None:
                    continue
                used += size
                with self.locked_state():
                    member.artifacts[index] = moved
                    member.at_collector = [
                        a for a in member.at_collector if a != ref.get("artifact_id")
                    ] + [moved["artifact_id"]]

    def _notify_done(self) -> None:
        state = self.state
        counts = summary_payload({}, state.members, limit=0)
        text = (
            f"group {state.group_id}: {counts['done']} of {counts['expected']} done, "
            f"{counts['failed']} failed, {counts['cancelled']} cancelled"
        )
        from paglets.system.user_info.contract import NOTIFY, USER_INFO, UserInfoRequest

        request = UserInfoRequest(
            severity="info" if not counts["failed"] else "warning",
            title=GROUP_DONE_TITLE,
            message=text,
            source_agent_id=self.agent_id,
            group_id=state.group_id,
            home_host_id=state.home_host_id,
            home_url=state.home_host_url,
            timestamp=time.time(),
            metadata={
                "group_id": state.group_id,
                "status": state.final_status or state.status,
                "expected": counts["expected"],
                "done": counts["done"],
                "failed": counts["failed"],
            },
        )
        try:  # the contract starts the lazy provider; it forwards to the home host
            self.require_contract(USER_INFO).call(NOTIFY, request, timeout=5.0)
        except Exception:
            log.info("collector %s: %s not recorded", self.agent_id, GROUP_DONE_TITLE)
        host_of(self).events.emit(
            GROUP_DONE_TITLE,
            agent_id=self.agent_id,
            data={"group_id": state.group_id, "status": state.final_status or state.status},
        )


def new_report_id() -> str:
    return uuid.uuid4().hex


def encode_initial_state(state: Any) -> tuple[str, str] | None:
    """(base64 of the encoded state, its class path), or None when over 64 KiB."""
    from paglets.serialization import codec
    from paglets.serialization.names import qualified_name as class_path

    data = codec.encode_state(state)
    if len(data) > 64 * 1024:
        return None
    return base64.b64encode(data).decode("ascii"), class_path(type(state))
