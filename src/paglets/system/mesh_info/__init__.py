"""`mesh-info` (jobs.md §6): the mesh's resources from this host's membership table.

The contract and wire types are in `contract`; the pure views in `views`; the provider
`MeshInfoService` (`service.mesh-info`) in `service`.
"""

from __future__ import annotations

from paglets.system.mesh_info.contract import (
    LANDSCAPE,
    MESH_INFO,
    MESH_INFO_AGENT_ID,
    SELECT,
    SNAPSHOT,
    SYNC,
    LandscapeRequest,
    MeshHostSnapshot,
    MeshLandscape,
    RejectedTarget,
    SnapshotRequest,
    TargetCandidate,
    TargetReason,
    TargetSelectionReply,
    TargetSelectionRequest,
)

__all__ = [
    "LANDSCAPE",
    "MESH_INFO",
    "MESH_INFO_AGENT_ID",
    "SELECT",
    "SNAPSHOT",
    "SYNC",
    "LandscapeRequest",
    "MeshHostSnapshot",
    "MeshLandscape",
    "RejectedTarget",
    "SnapshotRequest",
    "TargetCandidate",
    "TargetReason",
    "TargetSelectionReply",
    "TargetSelectionRequest",
]
