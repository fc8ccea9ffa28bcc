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
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil

from paglets.core.errors import PagletError

from .models import SlotLease

__all__ = [
    "ComputeJobCancelled",
    "JobContext",
    "JobHandle",
    "JobOutcome",
    "JobSupervisor",
    "attempt_dir",
]

_log = logging.getLogger("paglets.compute.jobs")

RENEW_EVERY = 20.0
POLL = 0.25
LOG_TAIL = 4096
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class ComputeJobCancelled(BaseException):
    """Raised in the job process when the host stops it (cancel, walltime, memory, a
    host stop). A BaseException so that a job's `except Exception` does not swallow it;
    `finally` blocks run."""


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


# -- inside the job --------------------------------------------------------------------


class JobContext:
    """`self.context` inside `run_compute_job()` (jobs.md §3.2)."""

    def __init__(
        self,
        *,
        work_dir: Path,
        job_id: str,
        attempt: int,
        cpu_ids: tuple[int, ...],
        host_name: str,
        emit: Callable[[dict[str, Any]], None],
        state_of: Callable[[], Any],
        cancel: threading.Event | None = None,
    ) -> None:
        self._work_dir = Path(work_dir)
        self.job_id = job_id
        self.attempt = attempt
        self.cpu_ids = cpu_ids
        self.name = host_name
        self._emit = emit
        self._state_of = state_of
        self._cancel = cancel or threading.Event()

    def work_dir(self, *, create: bool = True) -> Path:
        if create:
            self._work_dir.mkdir(parents=True, exist_ok=True)
        return self._work_dir

    def report_progress(self, fraction: float, text: str = "") -> None:
        """Progress for `jobs ps` and the collector (best effort, not durable)."""
        self._emit({"progress": float(fraction), "text": str(text)})

    def checkpoint(self) -> None:
        """Push the current state to the host, which stores it (durable once it has)."""
        from paglets.serialization import codec

        self._emit({"checkpoint": codec.encode_state(self._state_of())})

    def notify_user(
        self, severity: str, title: str, message: str, job_id: str | None = None, **_: Any
    ) -> bool:
        self._emit(
            {
                "notify": {
                    "severity": str(severity),
                    "title": str(title),
                    "message": str(message),
                    "job_id": job_id or self.job_id,
                }
            }
        )
        return True

    def cancel_requested(self) -> bool:
        return self._cancel.is_set()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _child_main(spec_bytes: bytes) -> None:
    """The job process (module docstring): prepare, run, write the result, exit."""
    spec = msgspec.msgpack.decode(spec_bytes)
    with contextlib.suppress(OSError):
        os.setsid()
    cpu_ids = tuple(spec["cpu_ids"])
    affinity: dict[str, Any] = {"affinity_enforced": False, "affinity_error": ""}
    if cpu_ids:
        from .affinity import apply_current_process_cpu_affinity

        result = apply_current_process_cpu_affinity(cpu_ids)
        affinity = {"affinity_enforced": result.enforced, "affinity_error": result.error or ""}
    directory = Path(spec["attempt_dir"])
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PAGLETS_CPU_IDS"] = ",".join(str(i) for i in cpu_ids)
    os.environ["PAGLETS_JOB_ID"] = spec["job_id"]
    tmp = Path(spec["work_dir"]) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(max(1, int(spec["cpu_cores"]))))
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(spec["gpu_ids"])
    for fd, name in ((1, "stdout.log"), (2, "stderr.log")):
        out = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, fd)
        os.close(out)
    control = (directory / "control.jsonl").open("ab", buffering=0)

    def emit(item: dict[str, Any]) -> None:
        if "checkpoint" in item:
            _write_atomic(directory / "checkpoint.msgpack", item["checkpoint"])
            item = {"checkpoint": True}
        control.write(json.dumps(item).encode() + b"\n")

    def on_term(_signum: int, _frame: Any) -> None:
        raise ComputeJobCancelled("stopped by the host (SIGTERM)")

    signal.signal(signal.SIGTERM, on_term)
    outcome: dict[str, Any] = {"ok": False, "kind": "exception", "error": "", **affinity}
    code = 1
    try:
        from paglets.core.agent import Paglet
        from paglets.serialization import codec
        from paglets.serialization.names import import_class

        cls = import_class(
            spec["class_name"],
            expect=Paglet,
            allow_modules=spec.get("allow_modules"),
            host_name=spec["host_name"],
        )
        state = codec.decode_state(cls.state_class(), spec["state"])
        paglet = cls(state, agent_id=spec["agent_id"])
        paglet._job_context = JobContext(
            work_dir=Path(spec["work_dir"]),
            job_id=spec["job_id"],
            attempt=spec["attempt"],
            cpu_ids=cpu_ids,
            host_name=spec["host_name"],
            emit=emit,
            state_of=lambda: paglet.state,
        )
        paglet.run_compute_job()
        outcome.update(ok=True, kind="", state=codec.encode_state(paglet.state))
        code = 0
    except ComputeJobCancelled as exc:
        outcome.update(kind="stopped", error=str(exc))
        code = 128 + signal.SIGTERM
    except BaseException as exc:  # the job's failure, reported, not a crash of the child
        import traceback

        traceback.print_exc()
        outcome.update(kind="exception", error=f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    _write_atomic(directory / "result.msgpack", msgspec.msgpack.encode(outcome))
    os._exit(code)  # no atexit handlers of the host's code in a forked child


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
                _child_main, (msgspec.msgpack.encode(spec),), f"paglets-job-{lease.job_id}"
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

    def _finish(self, handle: JobHandle, outcome: JobOutcome) -> None:
        from paglets.core.messages import Message

        with self._lock:
            handle.outcome = outcome
        self.runtime.job_exited(handle, outcome)
        self._tell(
            handle.agent_id,
            Message("compute_job_exit", {"lease_id": handle.lease.lease_id}),
        )

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
