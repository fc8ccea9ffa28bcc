"""The resident services every host runs without a launch config (api.md §16.4).

Each entry is `(class "module:qualname", service name)`. The system services (`jobs.md` §6)
are added here by the modules that define them; a launch config can still tune them
(`[[resident_services]]` naming the same class and service overrides the entry, and
`enabled = false` turns it off).
"""

from __future__ import annotations

__all__ = ["BUILTIN_RESIDENT_SERVICES"]

BUILTIN_RESIDENT_SERVICES: tuple[tuple[str, str], ...] = (
    ("paglets.system.server_info.service:ServerInfoService", "server-info"),
    ("paglets.system.mesh_info.service:MeshInfoService", "mesh-info"),
    ("paglets.system.user_info.service:UserInfoService", "user-info"),
    ("paglets.system.compute_slots.service:ComputeSlotsAgent", "compute-slots"),
)
