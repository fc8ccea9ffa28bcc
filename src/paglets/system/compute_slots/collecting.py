"""`CollectingComputeJobPaglet` (jobs.md §4.3, §4.5): a compute job that reports to its
group's collector through a durable outbox.

The report (result or failure, staged artifacts, usage) is built once, put in the state
with a fresh `report_id` and checkpointed **before** it is sent, so a crash between the
two re-sends the same report, which the collector answers `accepted` again. Until the
collector acknowledges, the job retries with backoff (5 s doubling to 10 min, ±20 %) and
is woken early when membership sees the collector's host alive (`report_pump`). Then a
successful (or cancelled) job disposes itself; a failed one is kept for inspection.

Artifacts are staged by `report_compute_artifact()` (which may run in the job process:
it only records the path) and enter the compute host's store, owned by the collector,
when the job's outcome is known: with the result on success, as `partial_artifacts` on
a failure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paglets.core.messages import Message
from paglets.system.host_access import host_of

from .job import ComputeJobPaglet
from .job_state import ComputeJobState, backoff_seconds
from .models import (
    COMPUTE_STATUS_CANCELLED,
    COMPUTE_STATUS_COMPLETED,
    COMPUTE_STATUS_FAILED_FINAL,
)
from .report_pump import REPORT_RETRY_MESSAGE, report_pump

__all__ = ["CollectingComputeJobPaglet", "CollectingComputeJobState"]

_log = logging.getLogger("paglets.compute.groups")

REPORT_BACKOFF_BASE = 5.0
REPORT_BACKOFF_MAX = 600.0
_STAGED_FILE = "staged-artifacts-{attempt}.jsonl"


@dataclass
class CollectingComputeJobState(ComputeJobState):
    """A job of a group (jobs.md §4.3). The report fields are the job's own (not
    runtime-owned), so they survive a restart snapshot only as their defaults."""

    group_id: str = ""
    job_key: str = ""
    collector_agent_id: str = ""
    collector_host_url: str = ""
    collector_host_id: str = ""
    report_timeout_seconds: float = 5.0
    dispose_after_report: bool = True
    report_sent: bool = False
    report_error: str = ""
    report_id: str = ""
    report_kind: str = ""  # job_result | job_failure
    report_payload: dict[str, Any] = field(default_factory=dict)
    report_attempts: int = 0
    next_report_at: float = 0.0
    report_first_at: float = 0.0
    report_give_up_seconds: float = 0.0  # 0 = never give up
    artifact_refs: list[dict[str, Any]] = field(default_factory=list)
    staged_artifacts: list[dict[str, Any]] = field(default_factory=list)
    staged_result: Any = None
    stood_down: bool = False


class CollectingComputeJobPaglet(ComputeJobPaglet):
    """A `ComputeJobPaglet` whose outcome goes to the group's `ResultCollectorPaglet`."""

    State = CollectingComputeJobState

    # -- in run_compute_job() --------------------------------------------------------------

    def report_compute_artifact(
        self,
        path: str | os.PathLike[str],
        result: Any = None,
        move: bool = False,
        name: str | None = None,
    ) -> None:
        """Stage a file to go to the collector with this job's report (jobs.md §4.5).

        Nothing is sent now: the file enters the compute host's store (renamed with
        `move=True`) when `run_compute_job()` returns, and is reported with the result;
        if the job then fails, it rides on the failure as `partial_artifacts`. `result`,
        when given, becomes the job's reported result.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(
                f"report_compute_artifact: {source} is not a file; write the output first"
            )
        entry = {"path": str(source.resolve()), "name": name or source.name, "move": bool(move)}
        st = self.state
        st.staged_artifacts = [*st.staged_artifacts, entry]
        if result is not None:
            st.staged_result = result
        # Also on disk: a failed job's final state does not come back from the job
        # process, but its staged files must still be reported (partial_artifacts).
        with contextlib.suppress(OSError):
            staged = Path(self.context.work_dir()) / _STAGED_FILE.format(attempt=st.attempt)
            with staged.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def build_result_payload(self) -> Any:
        """The reported result (override for more); default: the `result` given to
        `report_compute_artifact`, else None."""
        return self.state.staged_result

    # -- hooks -----------------------------------------------------------------------------

    def after_compute_success(self) -> None:
        self.continue_after_compute_success()

    def continue_after_compute_success(self) -> None:
        # Also on every activation while COMPLETED: a crash after the success was recorded
        # but before the report was, builds it now (files already stored are skipped).
        st = self.state
        if not st.report_payload:
            refs = self._store_staged(st.staged_artifacts)
            st.artifact_refs = refs
            self._prepare_report("job_result", {"result": self.build_result_payload()}, refs)
        self._drive_outbox()

    def after_compute_failure(self, message: str) -> None:
        st = self.state
        if st.report_payload and st.report_kind == "job_failure":
            self._drive_outbox()
            return
        partial = self._store_staged(self._staged_on_disk())
        cancelled = st.compute_status == COMPUTE_STATUS_CANCELLED
        self._prepare_report(
            "job_failure",
            {
                "result": None,
                "error": message,
                "kind": st.compute_failure_kind or ("cancelled" if cancelled else "exception"),
                "stage": "run" if st.started_at else "placement",
                "stderr_tail": st.stderr_tail,
                "cancelled": cancelled,
                "partial_artifacts": partial,
            },
            partial,
        )
        self._drive_outbox()

    def run(self) -> None:
        super().run()
        st = self.state
        if st.report_payload and not st.report_sent:
            # After a restart a failed job is not advanced by the base class; its report
            # still has to go out.
            report_pump(host_of(self)).due(self.agent_id, st.collector_host_id, 0.0)

    def handle_compute_job_message(self, message: Message) -> Any:
        if message.kind == REPORT_RETRY_MESSAGE:
            if message.args.get("now"):
                self.state.next_report_at = 0.0  # woken by the pump: due, or collector back
            self._drive_outbox()
            return {"report_sent": self.state.report_sent}
        return None

    def _transition(self, status: str) -> None:
        super()._transition(status)
        self._send_progress(status)

    # -- the outbox ------------------------------------------------------------------------

    def _prepare_report(
        self, kind: str, fields: dict[str, Any], refs: list[dict[str, Any]]
    ) -> None:
        """Build the report and make it durable before anything is sent (§4.3 step 1)."""
        st = self.state
        host = host_of(self)
        st.report_kind = kind
        st.report_id = uuid.uuid4().hex
        st.report_payload = {
            "group_id": st.group_id,
            "job_key": st.job_key,
            "agent_id": self.agent_id,
            "host_name": host.name,
            "host_url": host.address,
            "report_id": st.report_id,
            "attempt": st.attempt,
            "artifacts": refs,
            "usage": {
                "started_at": st.started_at,
                "finished_at": st.finished_at,
                "exit_code": st.exit_code,
                "cpu_core_ids": list(st.cpu_core_ids),
            },
            **fields,
        }
        st.report_sent = False
        st.report_error = ""
        st.report_attempts = 0
        st.report_first_at = time.time()
        st.next_report_at = 0.0
        self.checkpoint()

    def _drive_outbox(self) -> None:
        st = self.state
        if self.departed or not st.report_payload:
            return
        if st.report_sent:
            self._after_report()
            return
        now = time.time()
        if now < st.next_report_at:
            report_pump(host_of(self)).due(self.agent_id, st.collector_host_id, st.next_report_at)
            return
        try:
            proxy = self.context.get_proxy(st.collector_agent_id, st.collector_host_url or None)
            if proxy is None:
                raise LookupError(f"collector {st.collector_agent_id} not found")
            reply = proxy.send(
                Message(st.report_kind, dict(st.report_payload)),
                timeout=st.report_timeout_seconds,
            )
            status = reply.get("status") if isinstance(reply, dict) else None
            if status not in ("accepted", "duplicate"):
                raise ValueError(f"unexpected answer from the collector: {reply!r}")
        except Exception as exc:
            self._report_failed(exc, now)
            return
        st.report_sent = True
        st.report_error = ""
        st.stood_down = bool(reply.get("stand_down"))
        self.checkpoint()
        self._after_report()

    def _report_failed(self, exc: BaseException, now: float) -> None:
        st = self.state
        st.report_attempts += 1
        st.report_error = f"{type(exc).__name__}: {exc}"
        if st.report_give_up_seconds and now - st.report_first_at >= st.report_give_up_seconds:
            _log.warning(
                "job %s gives up reporting to %s: %s",
                self.agent_id,
                st.collector_agent_id,
                st.report_error,
            )
            self.checkpoint()
            return
        delay = backoff_seconds(st.report_attempts, REPORT_BACKOFF_BASE, REPORT_BACKOFF_MAX)
        st.next_report_at = now + delay
        self.checkpoint()
        report_pump(host_of(self)).due(self.agent_id, st.collector_host_id, st.next_report_at)

    def _after_report(self) -> None:
        """Acknowledged: stand down (a duplicate deletes its artifacts); successes and
        cancelled jobs dispose themselves, failures are kept (§4.3 steps 3 and 5)."""
        st = self.state
        report_pump(host_of(self)).forget(self.agent_id)
        if st.stood_down:
            for ref in st.artifact_refs:
                with contextlib.suppress(Exception):
                    self.context.delete_artifact(ref)
        status = st.compute_status
        dispose = status == COMPUTE_STATUS_CANCELLED or (
            status == COMPUTE_STATUS_COMPLETED and st.dispose_after_report
        )
        if st.stood_down and status != COMPUTE_STATUS_FAILED_FINAL:
            dispose = True
        if dispose:
            self._dispose_soon()

    def _dispose_soon(self) -> None:
        # Not from inside this turn: the dispose waits for the turn to end.
        host = host_of(self)
        agent_id = self.agent_id

        def dispose() -> None:
            with contextlib.suppress(Exception):
                host.dispose(agent_id)

        threading.Thread(target=dispose, daemon=True, name=f"dispose-{agent_id[:8]}").start()

    # -- artifacts and progress --------------------------------------------------------------

    def _staged_on_disk(self) -> list[dict[str, Any]]:
        st = self.state
        entries = list(st.staged_artifacts)
        path = self.work_dir() / _STAGED_FILE.format(attempt=st.attempt)
        with contextlib.suppress(OSError, ValueError):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    if entry not in entries:
                        entries.append(entry)
        return entries

    def _store_staged(self, staged: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Put staged files into this host's store, owned by the collector (a rename with
        `move` on one volume). A file already stored (a repeat after a crash) is skipped."""
        host = host_of(self)
        st = self.state
        refs: list[dict[str, Any]] = []
        for index, entry in enumerate(staged):
            # The tag names this staged file of this attempt: a repeat after a crash
            # finds what the first pass stored (its source may be renamed away already).
            tag = f"staged:{self.agent_id}:{st.attempt}:{index}"
            found = host.artifacts.list(tag=tag, limit=1)
            path = Path(entry["path"])
            if found:
                ref = found[0]
            elif path.is_file():
                ref = host.artifacts.put_file(
                    path,
                    name=entry.get("name") or path.name,
                    owner_agent_id=st.collector_agent_id or self.agent_id,
                    move=bool(entry.get("move")),
                    tag=tag,
                )
            else:
                _log.warning("job %s: staged artifact %s is gone", self.agent_id, path)
                continue
            wire = ref.to_wire()
            wire.update(host_url=host.address, host_name=host.name, host_id=host.host_id)
            refs.append(wire)
        return refs

    def _send_progress(self, status: str) -> None:
        """Best-effort `job_progress` to the collector, off the job's turn."""
        st = self.state
        if not st.collector_agent_id or status in (
            COMPUTE_STATUS_COMPLETED,
            COMPUTE_STATUS_FAILED_FINAL,
            COMPUTE_STATUS_CANCELLED,
        ):
            return
        host = host_of(self)
        payload = {
            "job_key": st.job_key,
            "attempt": st.attempt,
            "compute_status": status,
            "host_name": host.name,
            "host_url": host.address,
            "agent_id": self.agent_id,
        }
        try:
            proxy = self.context.get_proxy(st.collector_agent_id, st.collector_host_url or None)
        except Exception:
            return
        if proxy is None:
            return

        def send() -> None:
            with contextlib.suppress(Exception):
                proxy.send_oneway(Message("job_progress", payload), timeout=2.0)

        threading.Thread(target=send, daemon=True, name="job-progress").start()
