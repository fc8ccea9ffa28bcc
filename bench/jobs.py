"""The compute job of row i1. Importable as `bench.jobs` on every bench host (the repo root
is on the hosts' PYTHONPATH, `bench.hostprocs`).

`BenchJob` is a group member (`CollectingComputeJobPaglet`, so its result goes to the
collector through the durable outbox) that runs on a host worker thread
(`COMPUTE_ISOLATION = "thread"`): i1 measures the scheduler and the job protocol around
it, and a process job would mostly measure the forkserver's child start-up (e5) instead.
The paglets examples have no job that is both (`ThreadSleepJob` reports to no collector,
`DemoJobPaglet` runs in a process and stores an artifact), hence this one.

Every run appends one line to `<marker_dir>/<job_key>`, written by the run itself rather
than the protocol, so the benchmark can tell a job that ran twice from one whose report
was merely repeated.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from paglets.system.compute_slots import CollectingComputeJobPaglet, CollectingComputeJobState

__all__ = ["BenchJob", "BenchJobState"]


@dataclass
class BenchJobState(CollectingComputeJobState):
    seconds: float = 0.0  # how long the job "works" (sleeps: no CPU of its own)
    marker_dir: str = ""
    run_id: str = ""


class BenchJob(CollectingComputeJobPaglet):
    State = BenchJobState
    COMPUTE_ISOLATION = "thread"

    def run_compute_job(self) -> None:
        st = self.state
        if st.seconds > 0:
            time.sleep(st.seconds)
        st.run_id = uuid.uuid4().hex
        if st.marker_dir:
            line = f"{st.attempt} {st.run_id} {self.context.name}\n".encode()
            # One O_APPEND write per run: concurrent runs never interleave within a line.
            fd = os.open(
                os.path.join(st.marker_dir, st.job_key or self.agent_id),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                0o644,
            )
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def build_result_payload(self) -> Any:
        return {"run_id": self.state.run_id, "host": self.context.name}
