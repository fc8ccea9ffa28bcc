"""The job's state, exactly as in the seed (jobs.md §4.6)."""

from __future__ import annotations

from dataclasses import dataclass

from paglets.system.compute_slots import CollectingComputeJobState

__all__ = ["DsDiaBundleJobState"]


@dataclass
class DsDiaBundleJobState(CollectingComputeJobState):
    bundle_path: str = ""
    rows: int = 0
