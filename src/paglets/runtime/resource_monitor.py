"""This host's resource summary, kept fresh and published into membership (jobs.md §1.1,
§1.4).

`ResourceMonitor` samples the host every `interval` seconds on its own daemon thread
(psutil only: a few hundred microseconds; GPUs come from `GpuProbe`'s cached reading),
turns the sample into the load part (free cores, memory, temp and GPUs after headroom, the
60 s average of CPU used outside paglets jobs), and hands the spec and load bodies to the
membership node on the host's loop. The summary book sends a load only when its rounded
body changed, at most every 2 s, within the host's byte budget, so sampling often costs
the mesh nothing.

Other components refine the load without knowing the wire: the compute scheduler adds a
load source that returns its own `free_cpu_cores`, `running_jobs`, `queue_length`, ...
(`add_load_source`), and draining sets `accepting`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from paglets.core.errors import HostError
from paglets.remote.host_summary import LoadSummary, encode_load, resources_view
from paglets.runtime.resource_probe import CpuMeter, GpuProbe, HostResources, sample

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["LoadSource", "ResourceMonitor", "base_load"]

_log = logging.getLogger("paglets.resources")

GiB = 1024**3
EXTERNAL_WINDOW = 60.0  # external_busy_cores: the average of this many seconds
DEFAULT_INTERVAL = 2.0  # = the summary book's load interval: no sample is wasted

LoadSource = Callable[[HostResources, LoadSummary], Mapping[str, Any]]


def memory_headroom(total: int) -> int:
    """Kept free for the OS and the host itself: min(10 % of RAM, 4 GiB) (jobs.md §2.2)."""
    return min(total // 10, 4 * GiB)


def temp_headroom(total: int) -> int:
    """min(5 % of the volume, 10 GiB) (jobs.md §2.2)."""
    return min(total // 20, 10 * GiB)


def base_load(
    resources: HostResources, external_busy_cores: float, *, accepting: bool = True
) -> LoadSummary:
    """The load part before any scheduler refines it: no leases, so every job CPU not
    kept busy by others is free, and memory and temp are what is available minus
    headroom (jobs.md §2.2 with empty lease sums)."""
    spec, load = resources.spec, resources.load
    external = round(external_busy_cores * 4) / 4
    free_gpus = 0 if load.gpu_error else len(spec.gpus)
    return LoadSummary(
        free_cpu_cores=max(0, len(spec.job_cpu_ids) - math.ceil(external)),
        free_memory_bytes=max(
            0, load.memory_available_bytes - memory_headroom(spec.memory_total_bytes)
        ),
        free_temp_bytes=max(0, load.temp_free_bytes - temp_headroom(spec.temp_total_bytes)),
        free_gpus=free_gpus,
        external_busy_cores=external,
        cpu_percent=round(load.cpu_percent),
        load_per_cpu=load.load_per_cpu,
        accepting=accepting,
        errors=load.errors,
        gpu_memory_used_mb=tuple(g.memory_used_mb for g in load.gpus),
        gpu_utilization_percent=tuple(g.utilization_percent for g in load.gpus),
    )


class ResourceMonitor:
    """Samples this host and publishes its spec and load summaries (one per host)."""

    def __init__(
        self,
        host: Host,
        *,
        interval: float = DEFAULT_INTERVAL,
        gpus: str | None = None,
        gpu_command: str | None = "nvidia-smi",
        reserved_cores: int = 0,
    ) -> None:
        self.host = host
        self.interval = interval
        self.reserved_cores = reserved_cores
        try:
            self.gpu = GpuProbe(gpus, command=gpu_command)
        except ValueError as exc:
            raise HostError(f"host {host.name!r}: {exc}") from None
        self.accepting = True
        self.policy: dict[str, Any] = {}
        self._sources: list[LoadSource] = []
        self._cpu: CpuMeter | None = None
        self._busy: collections.deque[tuple[float, float]] = collections.deque()
        self._primed = True  # set False by start(): a fresh meter's first span is tiny
        self._resources: HostResources | None = None
        self._load: LoadSummary | None = None
        self._spec: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the GPU probe and the sampling thread (the first sample is taken at once)."""
        if self._thread is not None or self._stop.is_set():
            return  # running, or stopped for good (a host stopped while it was starting)
        self._cpu = CpuMeter()
        self._primed = False
        self.gpu.start()
        self._thread = threading.Thread(
            target=self._run, name=f"paglets-resources-{self.host.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        self.gpu.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a sampler bug must not end the summaries for good
                _log.exception("sampling the resources of host %r failed", self.host.name)
            self._wake.wait(self.interval)
            self._wake.clear()

    def wake(self) -> None:
        """Sample and publish soon (after a change the mesh should hear of quickly)."""
        self._wake.set()

    # -- refining the load -------------------------------------------------------------------

    def add_load_source(self, source: LoadSource) -> None:
        """`source(resources, base) -> {field: value}` overrides `LoadSummary` fields at
        every sample (the scheduler's free cores, running jobs, queue, ...). Called on the
        monitor's thread: it must be quick and never block on the network."""
        with self._lock:
            self._sources.append(source)
        self.wake()

    def remove_load_source(self, source: LoadSource) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._sources.remove(source)
        self.wake()

    def set_accepting(self, accepting: bool) -> None:
        """False while the host drains (jobs.md §1.1): never chosen for placement."""
        self.accepting = bool(accepting)
        self.wake()

    def set_policy(self, **policy: Any) -> None:
        """Spec `policy` fields (CPU/GPU jobs accepted, max job cores, max walltime)."""
        self.policy.update(policy)
        self.wake()

    # -- reading -----------------------------------------------------------------------------

    def current(self) -> HostResources | None:
        """The last sample (None before the first)."""
        return self._resources

    def load(self) -> LoadSummary | None:
        """The last load part as published (before wire rounding)."""
        return self._load

    def spec_body(self) -> dict[str, Any] | None:
        return self._spec

    def summary(self) -> dict[str, Any]:
        """This host's resources as `/health` and `HostRef.resources` show them."""
        resources, load = self._resources, self._load
        if resources is None or load is None or self._spec is None:
            return {}
        body = encode_load(load, resources.spec.memory_total_bytes, resources.spec.temp_total_bytes)
        return resources_view(self._spec, body, load_age_s=time.time() - resources.sampled_at)

    # -- one round ---------------------------------------------------------------------------

    def refresh(self) -> LoadSummary:
        """Sample now, rebuild spec and load, and publish them (when the mesh is on)."""
        with self._refreshing:  # the monitor's thread and a caller may both refresh
            return self._refresh()

    def _refresh(self) -> LoadSummary:
        host = self.host
        resources = sample(
            host.work_root,
            reserved_cores=self.reserved_cores,
            gpu=self.gpu,
            cpu=self._cpu or CpuMeter(),
        )
        external = self._external(resources)
        drain = getattr(host, "drain", None)  # runtime/draining.py, when the host has one
        accepting = self.accepting and not getattr(drain, "active", False)
        load = base_load(resources, external, accepting=accepting)
        load = dataclasses.replace(load, **self._counts())
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            try:
                load = dataclasses.replace(load, **dict(source(resources, load)))
            except Exception:
                _log.exception("a load source of host %r failed; its fields are skipped", host.name)
        spec = self._spec_body(resources)
        self._resources, self._load, self._spec = resources, load, spec
        self._publish(spec, resources, load)
        return load

    def _external(self, resources: HostResources) -> float:
        """CPU used outside paglets jobs, averaged over the last 60 s. Job processes are the
        scheduler's to subtract (its load source sets `external_busy_cores`)."""
        now = resources.sampled_at
        busy = self._busy
        if not self._primed:  # the first reading spans only since start(): not an average
            self._primed = True
            return resources.load.busy_cores
        busy.append((now, resources.load.busy_cores))
        while busy and now - busy[0][0] > EXTERNAL_WINDOW:
            busy.popleft()
        return sum(b for _, b in busy) / len(busy)

    def _counts(self) -> dict[str, int]:
        host = self.host
        try:
            return {
                "active_count": len(host.registry.live),
                "inactive_count": host.store.count_agents("inactive"),
            }
        except Exception:  # the store is closing: the host is stopping anyway
            return {}

    def _spec_body(self, resources: HostResources) -> dict[str, Any]:
        host = self.host
        spec = resources.spec
        driver = self.gpu.latest.driver_version
        if driver and "cuda_driver" not in host.properties:
            self._add_property("cuda_driver", driver)
        policy = {
            "cpu_jobs": True,
            "gpu_jobs": bool(spec.gpus),
            "max_job_cores": len(spec.job_cpu_ids),
            "max_walltime_seconds": None,
            **self.policy,
        }
        return {
            "host_id": host.host_id,
            "host_name": host.name,
            "url": host.address,
            "code_version": host.mesh_version,
            "platform": spec.platform,
            "arch": spec.arch,
            "python_version": spec.python_version,
            "logical_cpus": spec.logical_cpus,
            "eligible_cpu_ids": list(spec.eligible_cpu_ids),
            "job_cpu_ids": list(spec.job_cpu_ids),
            "cpu_affinity_supported": spec.cpu_affinity_supported,
            "memory_total_bytes": spec.memory_total_bytes,
            "temp_path": spec.temp_path,
            "temp_total_bytes": spec.temp_total_bytes,
            "gpus": [dataclasses.asdict(g) for g in spec.gpus],
            "tags": list(host.tags),
            "properties": dict(host.properties),
            "policy": policy,
        }

    def _add_property(self, key: str, value: str) -> None:
        """An automatic property learnt late (the CUDA driver): a new record everywhere."""
        host = self.host
        host.properties = {key: value, **host.properties}
        node, loop = host.mesh, host._loop
        if node is None or loop is None:
            return
        properties = {str(k): str(v) for k, v in host.properties.items()}
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(
                lambda: node.running and node.update_record(properties=properties)
            )

    def _publish(self, spec: dict[str, Any], resources: HostResources, load: LoadSummary) -> None:
        node, loop = self.host.mesh, self.host._loop
        if node is None or loop is None:
            return
        body = encode_load(load, resources.spec.memory_total_bytes, resources.spec.temp_total_bytes)

        def publish() -> None:
            if node.running and not node.leaving:
                node.publish("spec", spec)
                node.publish("load", body)

        with contextlib.suppress(RuntimeError):  # the loop is closed: the host stopped
            loop.call_soon_threadsafe(publish)
