"""`ServerInfoService`: the `server-info` provider every host runs (jobs.md §6).

A lazy resident service (`service.server-info`, idle 30 s): created by the first call,
put to sleep after 30 s without one. While it is active, its `run()` thread samples the
kernel's per-CPU times every second, so `load(interval=0)` answers at once with the CPU
use of the last whole second instead of paglets 2.0's meaningless 0 (psutil's first
`cpu_percent()` call). Until the first second has passed, the host's own resource sample
(taken every 2 s) stands in. GPUs come from the host's cached `nvidia-smi` reading or its
error; nothing here runs `nvidia-smi` on a request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from paglets.core.agent import PagletState
from paglets.core.runtime_values import ResidentLifecycle, ServiceScope
from paglets.patterns.operations import OperationPaglet
from paglets.runtime.resource_probe import CpuMeter, GpuReading
from paglets.services.contracts import EmptyPayload
from paglets.services.resident import ResidentServiceSpec
from paglets.system.host_access import host_of
from paglets.system.server_info import probes
from paglets.system.server_info.contract import (
    DF,
    LOAD,
    MAX_INTERVAL,
    PLIST,
    SERVER_INFO,
    SUMMARY,
    DfReply,
    DfRequest,
    LoadReply,
    LoadRequest,
    PlistReply,
    PlistRequest,
    ServerSummary,
)

__all__ = ["ServerInfoService", "ServerInfoState"]

SAMPLE_EVERY = 1.0  # seconds between the sampler's CPU readings
IDLE_TIMEOUT = 30.0


@dataclass
class ServerInfoState(PagletState):
    """Nothing to keep: every answer is measured. (A state class is required.)"""

    calls: int = 0


class _CpuSampler:
    """Per-CPU busy fractions of the last whole second, refreshed on a daemon thread
    until `stop()`."""

    __slots__ = ("_last", "_meter", "_stop", "_thread", "sampled_at")

    def __init__(self) -> None:
        self._meter = CpuMeter()
        self._last: list[float] | None = None
        self.sampled_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self._last = self._meter.measure()
            self.sampled_at = time.time()

    def stop(self) -> None:
        self._stop.set()

    @property
    def last(self) -> list[float] | None:
        return self._last


class ServerInfoService(OperationPaglet[ServerInfoState]):
    """The `server-info` operations (module docstring)."""

    State = ServerInfoState
    Operations = SERVER_INFO.operations
    SUBSCRIBED_MESSAGES: ClassVar[tuple[str, ...] | None] = ()  # system services: no multicast
    RESIDENT_SERVICES: ClassVar[tuple[Any, ...]] = (
        ResidentServiceSpec(
            SERVER_INFO,
            scope=ServiceScope.LOCAL,
            lifecycle=ResidentLifecycle.LAZY,
            idle_timeout=IDLE_TIMEOUT,
        ),
    )

    _sampler: _CpuSampler | None = None
    _processes: probes.ProcessTable | None = None

    def operation_handlers(self) -> Mapping[Any, Callable[[Any], Any]]:
        return {LOAD: self.load, DF: self.df, PLIST: self.plist, SUMMARY: self.summary}

    # -- the sampler lives as long as this incarnation --------------------------------------

    def run(self) -> None:
        sampler = _CpuSampler()
        self._sampler = sampler
        sampler.start(f"paglets-server-info-{self.context.name}")
        try:
            while not self.departed:
                time.sleep(0.5)
        finally:
            sampler.stop()

    # -- operations -----------------------------------------------------------------------

    def load(self, request: LoadRequest) -> LoadReply:
        host = host_of(self)
        interval = min(max(0.0, float(request.interval)), MAX_INTERVAL)
        fractions, window, source = self._cpu(host, interval)
        machine = probes.memory_and_load()
        per_cpu = tuple(round(100.0 * f, 1) for f in fractions)
        cpu_percent = round(sum(per_cpu) / len(per_cpu), 1) if per_cpu else 0.0
        current = host.resource_monitor.current()
        if source == "host-monitor" and current is not None:
            cpu_percent = round(current.load.cpu_percent, 1)
        load = machine["load_average"]
        reading = host.resource_monitor.gpu.latest if request.include_gpu else GpuReading()
        cpus = len(per_cpu) or (current.spec.logical_cpus if current is not None else 0) or 1
        return LoadReply(
            host_name=host.name,
            host_url=host.address,
            sampled_at=time.time(),
            cpu_percent=cpu_percent,
            per_cpu_percent=per_cpu,
            cpu_count=cpus,
            cpu_window_seconds=round(window, 3),
            cpu_source=source,
            memory_percent=float(machine["memory_percent"]),  # type: ignore[arg-type]
            memory_total_bytes=int(machine["memory_total_bytes"]),  # type: ignore[call-overload]
            memory_available_bytes=int(machine["memory_available_bytes"]),  # type: ignore[call-overload]
            swap_percent=float(machine["swap_percent"]),  # type: ignore[arg-type]
            swap_total_bytes=int(machine["swap_total_bytes"]),  # type: ignore[call-overload]
            load_average=load,  # type: ignore[arg-type]
            load_per_cpu=round(float(load[0]) / cpus, 2),  # type: ignore[index]
            gpus=probes.gpu_loads(reading) if request.include_gpu else (),
            gpu_present=reading.present,
            gpu_error=reading.error,
            gpu_sampled_at=reading.sampled_at,
        )

    def _cpu(self, host: Any, interval: float) -> tuple[list[float], float, str]:
        """(per-CPU fractions, the window they cover, where they came from)."""
        if interval > 0:
            meter = CpuMeter()
            time.sleep(interval)
            return meter.measure(), interval, "interval"
        sampler = self._sampler
        last = sampler.last if sampler is not None else None
        if last is not None:
            return last, SAMPLE_EVERY, "sampler"
        if host.resource_monitor.current() is not None:
            return [], float(host.resource_monitor.interval), "host-monitor"
        meter = CpuMeter()  # nothing sampled anywhere yet: a short measurement
        time.sleep(0.1)
        return meter.measure(), 0.1, "interval"

    def df(self, request: DfRequest) -> DfReply:
        host = host_of(self)
        rows = probes.disk_usage(request.paths, request.all_volumes)
        return DfReply(host_name=host.name, host_url=host.address, volumes=tuple(rows))

    def plist(self, request: PlistRequest) -> PlistReply:
        host = host_of(self)
        table = self._processes
        if table is None:
            table = self._processes = probes.ProcessTable()
        rows, matched, denied = table.list(
            request.query, request.limit, request.include_args, cpu_interval=0.2
        )
        return PlistReply(
            host_name=host.name,
            host_url=host.address,
            processes=tuple(rows),
            matched=matched,
            denied=denied,
        )

    def summary(self, request: EmptyPayload) -> ServerSummary:
        import paglets

        host = host_of(self)
        machine = probes.machine()
        return ServerSummary(
            host_name=host.name,
            host_url=host.address,
            host_id=host.host_id,
            paglets_version=paglets.__version__,
            code_version=str(host.mesh_version),
            tags=tuple(host.tags),
            **machine,  # type: ignore[arg-type]
        )
