"""Inside the job process (jobs.md §2.4, §3.2): `_child_main` prepares the process and
runs `run_compute_job()`; `JobContext` is `self.context` there (and on the worker thread of
a `COMPUTE_ISOLATION = "thread"` job).

Order matters: the child becomes its own process group and pins itself to its CPU ids
before any job code or thread runs, so every thread and subprocess inherits the mask;
fds 1 and 2 go to the attempt's log files; the class comes through the import gate by
`module:qualname` and the state is the codec's msgpack (nothing is pickled). The result
(`result.msgpack`, written atomically) carries the final state or the error; reports
(`checkpoint()`, `report_progress()`, `notify_user()`) are appended to `control.jsonl`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["THREAD_VARS", "ComputeJobCancelled", "JobContext", "child_main"]

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class ComputeJobCancelled(BaseException):
    """Raised in the job process when the host stops it (cancel, walltime, memory, a
    host stop). A BaseException so that a job's `except Exception` does not swallow it;
    `finally` blocks run."""


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


def child_main(spec_bytes: bytes) -> None:
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
