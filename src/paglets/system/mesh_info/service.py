"""`MeshInfoService`: the `mesh-info` provider every host runs (jobs.md §6).

Every answer comes from this host's membership table (`Host.list_hosts()`: the members
with the spec and load summaries that ride on gossip), so no operation calls another host
(**fix**: paglets 2.0 asked each peer in turn, one second each). The service keeps no
state of its own, so it runs lazily: the first call starts it and it sleeps after 30 s
without calls (jobs.md §6 lists it as eager; it has nothing to do between calls, and
"lazy where possible" lets it cost nothing on a host nobody asks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from paglets.core.agent import PagletState
from paglets.core.runtime_values import ResidentLifecycle, ServiceScope
from paglets.patterns.operations import OperationPaglet
from paglets.services.contracts import EmptyPayload
from paglets.services.resident import ResidentServiceSpec
from paglets.system.host_access import host_of
from paglets.system.mesh_info.contract import (
    LANDSCAPE,
    MESH_INFO,
    SELECT,
    SNAPSHOT,
    SYNC,
    LandscapeRequest,
    MeshHostSnapshot,
    MeshLandscape,
    SnapshotRequest,
    TargetSelectionReply,
    TargetSelectionRequest,
)
from paglets.system.mesh_info.views import landscape, select_targets, snapshot_of
from paglets.system.placement import HostSummary

__all__ = ["MeshInfoService", "MeshInfoState", "local_summaries"]


def local_summaries(host: Any) -> list[HostSummary]:
    """Every member of `host`'s membership table (itself first) as a `HostSummary`."""
    refs = host.list_hosts(online_only=False, include_self=True)
    return [
        HostSummary.from_host_ref(ref, local_url=host.address, local_version=host.mesh_version)
        for ref in refs
    ]


@dataclass
class MeshInfoState(PagletState):
    calls: int = 0


class MeshInfoService(OperationPaglet[MeshInfoState]):
    """The `mesh-info` operations (module docstring)."""

    State = MeshInfoState
    Operations = MESH_INFO.operations
    SUBSCRIBED_MESSAGES: ClassVar[tuple[str, ...] | None] = ()
    CHECKPOINT: ClassVar[str] = "never"  # nothing worth storing
    RESIDENT_SERVICES: ClassVar[tuple[Any, ...]] = (
        ResidentServiceSpec(
            MESH_INFO,
            scope=ServiceScope.LOCAL,
            lifecycle=ResidentLifecycle.LAZY,
            idle_timeout=30.0,
        ),
    )

    def operation_handlers(self) -> Mapping[Any, Callable[[Any], Any]]:
        return {
            SNAPSHOT: self.snapshot,
            LANDSCAPE: self.landscape,
            SYNC: self.sync,
            SELECT: self.select,
        }

    def snapshot(self, request: SnapshotRequest) -> MeshHostSnapshot:
        host = host_of(self)
        if request.force:
            host.resource_monitor.refresh()
        own = local_summaries(host)[0]
        return snapshot_of(own, time.time())

    def landscape(self, request: LandscapeRequest) -> MeshLandscape:
        return landscape(
            local_summaries(host_of(self)),
            time.time(),
            fresh_only=request.fresh_only,
            max_age=request.max_age,
            limit=request.limit,
        )

    def sync(self, request: EmptyPayload) -> MeshLandscape:
        """The local view (membership keeps it current; there is nothing to pull)."""
        return landscape(local_summaries(host_of(self)), time.time(), fresh_only=False)

    def select(self, request: TargetSelectionRequest) -> TargetSelectionReply:
        return select_targets(local_summaries(host_of(self)), request, time.time())
