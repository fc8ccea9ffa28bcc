"""`server-info` (jobs.md §6): a host's machine, load, disks and processes.

The contract and wire types are in `contract` (light, importable by clients); the provider
`ServerInfoService` (a lazy resident service, `service.server-info`) is in `service`.
"""

from __future__ import annotations

from paglets.system.server_info.contract import (
    DF,
    LOAD,
    PLIST,
    SERVER_INFO,
    SERVER_INFO_AGENT_ID,
    SUMMARY,
    DfReply,
    DfRequest,
    DiskUsage,
    GpuLoad,
    LoadReply,
    LoadRequest,
    PlistReply,
    PlistRequest,
    ProcessInfo,
    ServerSummary,
)

__all__ = [
    "DF",
    "LOAD",
    "PLIST",
    "SERVER_INFO",
    "SERVER_INFO_AGENT_ID",
    "SUMMARY",
    "DfReply",
    "DfRequest",
    "DiskUsage",
    "GpuLoad",
    "LoadReply",
    "LoadRequest",
    "PlistReply",
    "PlistRequest",
    "ProcessInfo",
    "ServerSummary",
]
