"""Running `run_compute_job()` (jobs.md §2.4, §2.9, §3.2): the job process and its
supervisor.

**The job process** comes from the host's forkserver (a fork, not a fresh interpreter).
Before any job code or thread runs, the child becomes its own process group (so a kill
reaches its subprocesses), pins itself to the lease's CPU ids (every later thread and
subprocess inherits the mask), sets `PAGLETS_CPU_IDS`, `PAGLETS_JOB_ID`, `TMPDIR` and the
thread-count variables, and sends fds 1 and 2 to `logs/attempt-N/{stdout,stderr}.log`
in the job's work dir. Then it imports the class through the import gate
(`module:qualname`), decodes the state (the codec's msgpack; nothing is pickled), and
calls `run_compute_job()` on that copy. The final state goes back in one step, as a file
(`result.msgpack`) read by the paglet when its exit is reported. `checkpoint()`,
`report_progress()` and `notify_user()` append to `control.jsonl`, which the supervisor
tails. SIGTERM raises `ComputeJobCancelled`, so `finally` blocks run.

**The supervisor** (one per host) starts jobs, renews their leases every 20 s (a lease
that expires means the supervisor is gone), stops them on the scheduler's word (SIGTERM
to the group, the grace, SIGKILL), releases the lease at exit with the reason, and tells
the paglet (`compute_job_exit`, a local one-way message).

`COMPUTE_ISOLATION = "thread"` runs the job on a host worker thread instead (tests and
tiny jobs): same context, no affinity and no kill; a stop sets the flag behind
`self.cancel_requested()`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil

from paglets.core.errors import PagletError

from .job_child import ComputeJobCancelled, JobContext, child_main
from .models import SlotLease

__all__ = [
    "ComputeJobCancelled",
    "JobContext",
    "JobHandle",
    "JobOutcome",
    "JobSupervisor",
    "attempt_dir",
    "job_logs_dir",
    "prune_job_logs",
]

_log = logging.getLogger("paglets.compute.jobs")

RENEW_EVERY = 20.0
POLL = 0.25
LOG_TAIL = 4096


def job_logs_dir(host: Any, job_id: str) -> Path:
    """Where an ended attempt's logs are kept: `<persistence_dir>/logs/jobs/<job_id>/`."""
    return Path(host.persistence_dir) / "logs" / "jobs" / job_id


def prune_job_logs(host: Any, *, max_age: float = 7 * 86400) -> int:
    """Delete the kept logs of jobs whose last attempt ended more than `max_age` ago."""
    root = Path(host.persistence_dir) / "logs" / "jobs"
    cutoff = time.time() - max_age
    removed = 0
    for path in root.glob("*") if root.is_dir() else ():
        try:
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def attempt_dir(work_dir: Path, attempt: int) -> Path:
    """`<work dir>/logs/attempt-N/`: the attempt's logs, control file and result."""
    return Path(work_dir) / "logs" / f"attempt-{attempt}"


def stderr_tail(directory: Path) -> str:
    """The last 4 KiB of an attempt's stderr ("" when there is none)."""
    path = directory / "stderr.log"
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# -- on the host -------------------------------------------------------------------------


@dataclass(slots=True)
class JobOutcome:
    """How an attempt ended, as the paglet learns it.

    `kind`: "" (success), "exception", "stopped" (the host's stop, see `stop_reason`),
    "killed" (a signal nobody here sent), "lost" (no result: the child died oddly)."""

    ok: bool
    kind: str = ""
    error: str = ""
    stop_reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    state: bytes = b""
    affinity_enforced: bool = False
    affinity_error: str = ""
    stderr_tail: str = ""


@dataclass(slots=True)
class JobHandle:
    lease: SlotLease
    agent_id: str
    job_id: str
    attempt: int
    directory: Path
    mode: str
    pid: int = 0
    create_time: float = 0.0
    process: Any = None
    thread: threading.Thread | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_reason: str = ""
    stop_at: float = 0.0
    outcome: JobOutcome | None = None
    control_offset: int = 0
    usage_paths: list[Path] = field(default_factory=list)  # measured as its work bytes


class JobSupervisor:
    """The host's job processes (module docstring). `runtime` is the host's
    `SlotsRuntime`: it owns the scheduler and its lock."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.host = runtime.host
        self._jobs: dict[str, JobHandle] = {}
        self._lock = threading.Lock()

    # -- queries ---------------------------------------------------------------------------

    def handle(self, lease_id: str) -> JobHandle | None:
        with self._lock:
            return self._jobs.get(lease_id)

    def pending(self) -> int:
        """Attempts whose paglet has not taken the outcome yet (running, or exit on its
        way to the paglet)."""
        with self._lock:
            return len(self._jobs)

    def running(self, lease_id: str) -> bool:
        h = self.handle(lease_id)
        return h is not None and h.outcome is None

    def take_outcome(self, lease_id: str) -> JobOutcome | None:
        with self._lock:
            h = self._jobs.get(lease_id)
            if h is None or h.outcome is None:
                return None
            del self._jobs[lease_id]
            return h.outcome

    # -- start -----------------------------------------------------------------------------

    def start(self, paglet: Any, lease: SlotLease, *, work_dir: Path, attempt: int) -> JobHandle:
        """Start `paglet.run_compute_job()` for `lease` (idempotent per lease)."""
        from paglets.serialization import codec
        from paglets.serialization.names import qualified_name

        with self._lock:
            existing = self._jobs.get(lease.lease_id)
            if existing is not None:
                return existing
            mode = getattr(type(paglet), "COMPUTE_ISOLATION", "process")
            handle = JobHandle(
                lease=lease,
                agent_id=paglet.agent_id,
                job_id=lease.job_id,
                attempt=attempt,
                directory=attempt_dir(work_dir, attempt),
                mode=mode,
            )
            self._jobs[lease.lease_id] = handle
        handle.directory.mkdir(parents=True, exist_ok=True)
        try:
            extra = [Path(p) for p in paglet.compute_usage_paths()]
        except Exception:
            _log.exception("compute_usage_paths() of job %s failed", lease.job_id)
            extra = []
        handle.usage_paths = [Path(work_dir), *extra]
        state = codec.encode_state(paglet.state)
        if mode == "thread":
            cls = type(paglet)
            copy = cls(codec.decode_state(cls.state_class(), state), agent_id=paglet.agent_id)
            copy._job_context = JobContext(
                work_dir=work_dir,
                job_id=lease.job_id,
                attempt=attempt,
                cpu_ids=(),
                host_name=self.host.name,
                emit=lambda item: self._control(handle, item),
                state_of=lambda: copy.state,
                cancel=handle.cancel,
            )
            handle.thread = threading.Thread(
                target=self._run_thread, args=(handle, copy), name=f"compute-{lease.job_id}"
            )
            handle.thread.daemon = True
            handle.thread.start()
            handle.pid = os.getpid()
            threading.Thread(
                target=self._renew_while, args=(handle,), name=f"renew-{lease.job_id}", daemon=True
            ).start()
        else:
            from paglets.runtime.forkserver import start_child

            spec = {
                "class_name": qualified_name(type(paglet)),
                "state": state,
                "agent_id": paglet.agent_id,
                "job_id": lease.job_id,
                "attempt": attempt,
                "cpu_ids": list(lease.cpu_core_ids) if lease.cpu_affinity_supported else [],
                "cpu_cores": lease.cpu_cores,
                "gpu_ids": list(lease.gpu_ids),
                "work_dir": str(work_dir),
                "attempt_dir": str(handle.directory),
                "allow_modules": self.host.allow_modules,
                "host_name": self.host.name,
            }
            process = start_child(
                child_main, (msgspec.msgpack.encode(spec),), f"paglets-job-{lease.job_id}"
            )
            handle.process = process
            handle.pid = int(process.pid or 0)
            with contextlib.suppress(psutil.Error):
                handle.create_time = psutil.Process(handle.pid).create_time()
            threading.Thread(
                target=self._watch, args=(handle,), name=f"compute-{lease.job_id}", daemon=True
            ).start()
        self.runtime.started(handle)
        return handle

    def _run_thread(self, handle: JobHandle, copy: Any) -> None:
        from paglets.serialization import codec

        outcome = JobOutcome(ok=False, kind="exception")
        try:
            copy.run_compute_job()
            outcome = JobOutcome(ok=True, state=codec.encode_state(copy.state))
        except ComputeJobCancelled as exc:
            outcome = JobOutcome(ok=False, kind="stopped", error=str(exc))
        except BaseException as exc:
            outcome = JobOutcome(ok=False, kind="exception", error=f"{type(exc).__name__}: {exc}")
        if handle.stop_reason and not outcome.ok:
            outcome.kind, outcome.stop_reason = "stopped", handle.stop_reason
        outcome.exit_code = 0 if outcome.ok else 1
        self._finish(handle, outcome)

    def _renew_while(self, handle: JobHandle) -> None:
        """A thread job's heartbeat: renew its lease every 20 s while the thread runs."""
        thread = handle.thread
        while thread is not None and thread.is_alive():
            thread.join(RENEW_EVERY)
            if thread.is_alive():
                self.runtime.renew(handle.lease.lease_id)

    # -- watching a process ----------------------------------------------------------------

    def _watch(self, handle: JobHandle) -> None:
        process = handle.process
        renewed = time.monotonic()
        while True:
            process.join(POLL)
            self._poll_control(handle)
            if process.exitcode is not None:
                break
            if handle.stop_at and time.time() >= handle.stop_at:
                self._signal(handle, signal.SIGKILL)
                handle.stop_at = 0.0
            if time.monotonic() - renewed >= RENEW_EVERY:
                renewed = time.monotonic()
                self.runtime.renew(handle.lease.lease_id)
        self._poll_control(handle)
        self._signal(handle, signal.SIGKILL)  # leftovers of its group (e.g. subprocesses)
        code = process.exitcode
        outcome = self._read_result(handle)
        if code is not None and code < 0:
            outcome.signal = -code
        else:
            outcome.exit_code = code
        if handle.stop_reason and not outcome.ok:
            outcome.kind, outcome.stop_reason = "stopped", handle.stop_reason
        elif outcome.kind == "lost" and outcome.signal is not None:
            outcome.kind = "killed"
            outcome.error = f"job process killed by signal {outcome.signal}"
        if not outcome.ok:
            outcome.stderr_tail = stderr_tail(handle.directory)
        self._finish(handle, outcome)

    def _read_result(self, handle: JobHandle) -> JobOutcome:
        try:
            data = msgspec.msgpack.decode((handle.directory / "result.msgpack").read_bytes())
        except (OSError, msgspec.DecodeError):
            return JobOutcome(ok=False, kind="lost", error="job process ended without a result")
        return JobOutcome(
            ok=bool(data.get("ok")),
            kind=str(data.get("kind") or ""),
            error=str(data.get("error") or ""),
            state=data.get("state") or b"",
            affinity_enforced=bool(data.get("affinity_enforced")),
            affinity_error=str(data.get("affinity_error") or ""),
        )

    def _poll_control(self, handle: JobHandle) -> None:
        path = handle.directory / "control.jsonl"
        try:
            with path.open("rb") as f:
                f.seek(handle.control_offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        handle.control_offset += end + 1
        for line in data[: end + 1].splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("checkpoint") is True:
                with contextlib.suppress(OSError):
                    item["checkpoint"] = (handle.directory / "checkpoint.msgpack").read_bytes()
            self._control(handle, item)

    def _control(self, handle: JobHandle, item: dict[str, Any]) -> None:
        """A report from inside the job, handed to its paglet as a local message."""
        from paglets.core.messages import Message

        if "checkpoint" in item:
            message = Message(
                "compute_job_checkpoint",
                {"lease_id": handle.lease.lease_id, "state": item["checkpoint"]},
            )
        elif "notify" in item:
            message = Message("compute_job_notify", dict(item["notify"]))
        else:
            message = Message(
                "compute_job_progress",
                {"fraction": item.get("progress", 0.0), "text": item.get("text", "")},
            )
        self._tell(handle.agent_id, message)

    def _tell(self, agent_id: str, message: Any) -> None:
        try:
            self.host.proxy(agent_id).send_oneway(message)
        except PagletError as exc:
            _log.info("compute job %s not told %s: %s", agent_id, message.kind, exc)
        except Exception as exc:  # the host stopped under us (store closed): recovery tells
            if not getattr(self.host, "stopped", False):
                raise
            _log.info("compute job %s not told %s (host stopped): %s", agent_id, message.kind, exc)

    def _finish(self, handle: JobHandle, outcome: JobOutcome) -> None:
        from paglets.core.messages import Message

        self._archive_logs(handle)
        with self._lock:
            handle.outcome = outcome
        try:
            self.runtime.job_exited(handle, outcome)
        except Exception:  # the host is stopping (store closed): restart recovery ends it
            _log.exception("releasing the lease of job %s failed", handle.job_id)
        self._tell(
            handle.agent_id,
            Message("compute_job_exit", {"lease_id": handle.lease.lease_id}),
        )

    def _archive_logs(self, handle: JobHandle) -> None:
        """An ended attempt's logs leave the work dir for `<persistence_dir>/logs/jobs/
        <job_id>/attempt-N/` (kept 7 days), so they outlive the job's stay here."""
        if handle.mode == "thread":
            return
        dest = job_logs_dir(self.host, handle.job_id) / handle.directory.name
        try:
            dest.mkdir(parents=True, exist_ok=True)
            for name in ("stdout.log", "stderr.log"):
                src = handle.directory / name
                if src.exists():
                    shutil.move(str(src), str(dest / name))
        except OSError as exc:
            _log.warning("logs of job %s not archived: %s", handle.job_id, exc)

    # -- stopping --------------------------------------------------------------------------

    def _signal(self, handle: JobHandle, signum: int) -> None:
        if handle.mode == "thread" or not handle.pid:
            return
        try:
            os.killpg(handle.pid, signum)
        except (ProcessLookupError, PermissionError):
            if handle.process is not None and handle.process.exitcode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(handle.pid, signum)

    def stop(self, lease: SlotLease, reason: str, grace: float) -> None:
        """The scheduler's `stop_job`: SIGTERM the group now, SIGKILL after `grace`. A
        lease with no job here (a host restart) names a pid: kill it if it is still the
        same process."""
        handle = self.handle(lease.lease_id)
        if handle is None:
            _kill_orphan(lease)
            return
        if handle.outcome is not None:
            return
        handle.stop_reason = handle.stop_reason or reason
        handle.cancel.set()
        if handle.mode == "thread":
            return
        if grace <= 0:
            self._signal(handle, signal.SIGKILL)
            return
        self._signal(handle, signal.SIGTERM)
        handle.stop_at = time.time() + grace

    def stop_all(self, reason: str = "host-stop", grace: float = 0.0) -> None:
        with self._lock:
            handles = [h for h in self._jobs.values() if h.outcome is None]
        for h in handles:
            self.stop(h.lease, reason, grace)


def _kill_orphan(lease: SlotLease) -> None:
    if not lease.pid:
        return
    try:
        proc = psutil.Process(lease.pid)
        if lease.pid_started_at and abs(proc.create_time() - lease.pid_started_at) > 1.0:
            return  # a recycled pid: not our job
    except psutil.Error:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(lease.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(lease.pid, signal.SIGKILL)
