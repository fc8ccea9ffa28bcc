"""The job paglet, exactly as in the seed (jobs.md §4.6)."""

from __future__ import annotations

from ds_dia.compute.bundles import process_bundle
from ds_dia.compute.models import DsDiaBundleJobState
from paglets.system.compute_slots import CollectingComputeJobPaglet

__all__ = ["DsDiaBundleJobPaglet"]


class DsDiaBundleJobPaglet(CollectingComputeJobPaglet):
    State = DsDiaBundleJobState

    def run_compute_job(self) -> None:
        out = self.context.work_dir() / "bundle.parquet"
        self.state.rows = process_bundle(self.state.bundle_path, out)  # application code
        self.report_compute_artifact(out, result={"rows": self.state.rows}, move=True)
