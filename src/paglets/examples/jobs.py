"""Small compute jobs: the examples of docs/jobs.md and the jobs the tests run on real
host processes (a host imports them by `module:qualname`, so they live in a module).

* `SleepJob` sleeps `seconds` in a job process, printing a line per step; it writes its
  pid to `<marker_dir>/<agent_id>.pid` when it starts and appends a line to
  `<marker_dir>/<agent_id>.done` when it finishes, so a test can see the process and
  count completions.
* `ThreadSleepJob` does the same on a host worker thread (`COMPUTE_ISOLATION = "thread"`)
  and stops early when the host asks (`self.cancel_requested()`).
* `FailingJob` raises.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from paglets.system.compute_slots import ComputeJobPaglet, ComputeJobState

__all__ = ["FailingJob", "SleepJob", "SleepJobState", "ThreadSleepJob"]

MiB = 1024 * 1024


@dataclass
class SleepJobState(ComputeJobState):
    seconds: float = 0.2
    first_attempt_seconds: float = 0.0  # > 0: the first attempt sleeps this long instead
    marker_dir: str = ""
    result: str = ""
    steps: int = 0
    notify: bool = False  # tell the submitter when done (user-info, on the home host)
    memory_bytes: int = 64 * MiB
    estimated_runtime_seconds: float = 1.0


class SleepJob(ComputeJobPaglet):
    State = SleepJobState

    def _marker(self, suffix: str) -> Path | None:
        if not self.state.marker_dir:
            return None
        return Path(self.state.marker_dir) / f"{self.agent_id}.{suffix}"

    def run_compute_job(self) -> None:
        pid_file = self._marker("pid")
        if pid_file is not None:  # atomically: a reader never sees it empty
            tmp = pid_file.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            tmp.replace(pid_file)
        seconds = self.state.seconds
        if self.state.attempt == 1 and self.state.first_attempt_seconds > 0:
            seconds = self.state.first_attempt_seconds
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.cancel_requested():
                raise RuntimeError("cancelled by the host")
            self.state.steps += 1
            print(f"step {self.state.steps}", flush=True)
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        self.state.result = f"slept {seconds:g}s on {self.context.name}"
        if self.state.notify:
            self.context.notify_user("info", "job done", self.state.result)
        done = self._marker("done")
        if done is not None:
            with done.open("a") as f:
                f.write(f"{self.state.attempt}\n")


class ThreadSleepJob(SleepJob):
    COMPUTE_ISOLATION = "thread"


class FailingJob(SleepJob):
    def run_compute_job(self) -> None:
        raise ValueError("this job always fails")
