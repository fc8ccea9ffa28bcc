"""The job class of `paglets demo` (cli.md §11): a short job that writes one small output
file and reports it as an artifact.

It lives in `paglets.examples` so that every host of the demo (all from the same install)
imports it by `module:qualname`; the seed's own application, `ds_dia`, has the same shape.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from paglets.system.compute_slots import CollectingComputeJobPaglet, CollectingComputeJobState

__all__ = ["DemoJobPaglet", "DemoJobState"]


@dataclass
class DemoJobState(CollectingComputeJobState):
    bundle: str = ""
    seconds: float = 1.0  # how long the job "works"
    rows: int = 0


class DemoJobPaglet(CollectingComputeJobPaglet):
    """Hashes its bundle name for `seconds`, writes `<bundle>.csv`, reports it."""

    State = DemoJobState

    def run_compute_job(self) -> None:
        st = self.state
        out = self.context.work_dir() / f"{st.bundle or 'bundle'}.csv"
        rows = []
        digest = st.bundle.encode()
        deadline = time.monotonic() + max(0.0, st.seconds)
        steps = 0
        while True:  # a little real CPU work, spread over `seconds`
            digest = hashlib.sha256(digest).digest()
            rows.append(f"{steps},{digest.hex()[:16]}")
            steps += 1
            if time.monotonic() >= deadline and steps >= 10:
                break
            if steps % 50 == 0:
                self.context.report_progress(
                    min(1.0, 1.0 - (deadline - time.monotonic()) / max(st.seconds, 1e-9)),
                    f"{steps} rows",
                )
                time.sleep(0.02)
        out.write_text("step,hash\n" + "\n".join(rows) + "\n", encoding="utf-8")
        st.rows = len(rows)
        self.report_compute_artifact(out, result={"rows": st.rows}, move=True)
