"""Reading the machine for `server-info` (psutil): memory and load, disks, processes.

No network, no event loop. The CPU use comes from the caller (the service's per-second
sampler, or an interval it measured), GPUs from the host's cached `nvidia-smi` reading:
nothing here runs `nvidia-smi` or sleeps, except `ProcessTable.cpu_interval` when asked.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

from paglets.runtime.resource_probe import GpuReading
from paglets.system.server_info.contract import (
    MAX_PLIST_LIMIT,
    DiskUsage,
    GpuLoad,
    ProcessInfo,
)

__all__ = [
    "ProcessTable",
    "disk_usage",
    "gpu_loads",
    "memory_and_load",
    "real_partitions",
]

# File systems that hold no user data (psutil lists them with all=True only, mostly).
_PSEUDO_FS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs",
        "devpts", "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs",
        "overlay", "proc", "pstore", "ramfs", "rpc_pipefs", "securityfs", "squashfs",
        "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip


def memory_and_load() -> dict[str, object]:
    """Memory, swap and load averages now (psutil, microseconds)."""
    memory = psutil.virtual_memory()
    try:
        swap = psutil.swap_memory()
        swap_total, swap_percent = int(swap.total), float(swap.percent)
    except (OSError, RuntimeError):
        swap_total, swap_percent = 0, 0.0
    try:
        load = tuple(round(float(x), 2) for x in psutil.getloadavg())
    except (OSError, AttributeError):
        load = (0.0, 0.0, 0.0)
    return {
        "memory_percent": float(memory.percent),
        "memory_total_bytes": int(memory.total),
        "memory_available_bytes": int(memory.available),
        "swap_percent": swap_percent,
        "swap_total_bytes": swap_total,
        "load_average": load,
    }


def gpu_loads(reading: GpuReading) -> tuple[GpuLoad, ...]:
    """The devices of a cached `nvidia-smi` reading with their use."""
    usage = {u.index: u for u in reading.usage}
    out = []
    for gpu in reading.gpus:
        used = usage.get(gpu.index)
        out.append(
            GpuLoad(
                index=gpu.index,
                name=gpu.name,
                uuid=gpu.uuid,
                utilization_percent=used.utilization_percent if used else 0,
                memory_used_mb=used.memory_used_mb if used else 0,
                memory_total_mb=gpu.memory_total_mb,
            )
        )
    return tuple(out)


# -- disks ---------------------------------------------------------------------------------


def real_partitions(all_volumes: bool = False) -> list[tuple[str, str, str]]:
    """(mountpoint, device, fstype) of mounted volumes: each device-backed volume once (at
    its shortest mountpoint), or with `all_volumes` every mount. Sorted by mountpoint."""
    try:
        parts = psutil.disk_partitions(all=all_volumes)
    except OSError:
        return []
    seen: dict[str, tuple[str, str, str]] = {}
    devices: set[str] = set()
    for part in sorted(parts, key=lambda p: (len(p.mountpoint), p.mountpoint)):
        if not all_volumes:
            if part.fstype in _PSEUDO_FS or not part.device or part.device in devices:
                continue  # a pseudo file system, or a bind mount of a volume already listed
            devices.add(part.device)
        seen.setdefault(part.mountpoint, (part.mountpoint, part.device, part.fstype))
    return [seen[k] for k in sorted(seen)]


def _mount_of(path: Path, mounts: Sequence[tuple[str, str, str]]) -> tuple[str, str, str]:
    """The longest mountpoint that contains `path`."""
    best = ("", "", "")
    text = str(path)
    for mount in mounts:
        point = mount[0]
        inside = text == point or text.startswith(point.rstrip(os.sep) + os.sep)
        if inside and len(point) > len(best[0]):
            best = mount
    return best


def disk_usage(paths: Iterable[str], all_volumes: bool = False) -> list[DiskUsage]:
    """One row per path (`~` expanded; relative paths against the host's working
    directory), an `error` row for a path that cannot be read. No paths: `/` and every
    real partition; `all_volumes` adds every mounted volume."""
    wanted = [p for p in paths if p]
    mounts_all = real_partitions(True)
    if not wanted:
        wanted = [os.path.abspath(os.sep)]
        wanted += [m[0] for m in real_partitions(False) if m[0] not in wanted]
    if all_volumes:
        wanted += [m[0] for m in mounts_all if m[0] not in wanted]
    rows: list[DiskUsage] = []
    for raw in wanted:
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        try:
            usage = psutil.disk_usage(str(path))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            rows.append(DiskUsage(path=raw, error=f"cannot read {str(path)!r}: {reason}"))
            continue
        mountpoint, device, fstype = _mount_of(path.resolve(), mounts_all)
        rows.append(
            DiskUsage(
                path=raw,
                mountpoint=mountpoint,
                device=device,
                fstype=fstype,
                total_bytes=int(usage.total),
                used_bytes=int(usage.used),
                free_bytes=int(usage.free),
                percent=float(usage.percent),
            )
        )
    return rows


# -- processes -----------------------------------------------------------------------------

_ATTRS = ("pid", "name", "cmdline", "username", "status", "memory_info", "create_time")


class ProcessTable:
    """Process listings with a CPU % per process.

    psutil measures a process's CPU % between two calls on the same `Process` object, so
    the objects of processes listed before are kept (by pid and start time) and the next
    listing reports their use since then; a process seen for the first time has `None`
    unless `cpu_interval` > 0 measures it now. Not thread-safe: the service calls it from
    its turns, which never overlap."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[tuple[int, float], psutil.Process] = {}

    def list(
        self,
        query: str = "",
        limit: int = 25,
        include_args: bool = False,
        cpu_interval: float = 0.0,
    ) -> tuple[list[ProcessInfo], int, int]:
        """(processes largest RSS first, how many matched, how many were unreadable)."""
        limit = max(1, min(int(limit), MAX_PLIST_LIMIT))
        needle = query.strip().lower()
        total_memory = psutil.virtual_memory().total or 1
        matched: list[tuple[int, dict[str, object]]] = []
        denied = 0
        for proc in psutil.process_iter(_ATTRS):
            info = proc.info
            name = str(info.get("name") or "")
            cmdline = " ".join(info.get("cmdline") or ())
            if needle and needle not in name.lower() and needle not in cmdline.lower():
                continue
            memory = info.get("memory_info")
            if memory is None:
                denied += 1
                continue
            info["_cmdline"] = cmdline
            matched.append((int(memory.rss), info))
        matched.sort(key=lambda item: (-item[0], int(item[1]["pid"])))  # type: ignore[call-overload]
        top = matched[:limit]
        fresh: list[psutil.Process] = []
        objects: list[psutil.Process | None] = []
        keep: dict[tuple[int, float], psutil.Process] = {}
        for _, info in top:
            key = (int(info["pid"]), float(info.get("create_time") or 0.0))  # type: ignore[arg-type]
            proc = self._known.get(key)
            if proc is None:
                try:
                    proc = psutil.Process(key[0])
                    proc.cpu_percent(None)  # primes the interval
                    fresh.append(proc)
                except psutil.Error:
                    proc = None
            if proc is not None:
                keep[key] = proc
            objects.append(proc)
        if fresh and cpu_interval > 0:
            time.sleep(cpu_interval)
        self._known = keep  # forget processes no longer listed (bounded by `limit`)
        rows = []
        for (rss, info), proc in zip(top, objects, strict=True):
            cpu: float | None = None
            if proc is not None and (proc not in fresh or cpu_interval > 0):
                with contextlib.suppress(psutil.Error):
                    cpu = round(proc.cpu_percent(None), 1)
            name = str(info.get("name") or "")
            cmdline = str(info["_cmdline"])
            rows.append(
                ProcessInfo(
                    pid=int(info["pid"]),  # type: ignore[call-overload]
                    name=name,
                    cmdline=cmdline if include_args else "",
                    username=str(info.get("username") or ""),
                    status=str(info.get("status") or ""),
                    rss_bytes=rss,
                    memory_percent=round(100.0 * rss / total_memory, 2),
                    cpu_percent=cpu,
                    create_time=float(info.get("create_time") or 0.0),  # type: ignore[arg-type]
                )
            )
        return rows, len(matched), denied


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, object]:
    """What the machine is (for `summary`)."""
    try:
        swap_total = int(psutil.swap_memory().total)
    except (OSError, RuntimeError):
        swap_total = 0
    return {
        "hostname": socket.gethostname(),
        "platform": sys.platform,
        "os_release": platform.platform(terse=True),
        "arch": platform.machine().lower(),
        "python_version": platform.python_version(),
        "logical_cpus": int(psutil.cpu_count(logical=True) or 0),
        "physical_cpus": int(psutil.cpu_count(logical=False) or 0),
        "memory_total_bytes": int(psutil.virtual_memory().total),
        "swap_total_bytes": swap_total,
        "boot_time": float(psutil.boot_time()),
    }
