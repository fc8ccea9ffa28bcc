"""Measuring this host's resources (jobs.md §1.1-1.2): CPUs and affinity, memory, temp
storage, load averages, CPU use and GPUs.

Nothing here touches the network or the event loop. psutil reads the kernel's counters
(microseconds); GPUs come from `nvidia-smi`, which can take a second or hang, so only
`GpuProbe`'s own worker thread runs it (2 s timeout, every 10 s) and everyone else reads
its cached `latest` reading. A machine without `nvidia-smi` has no GPUs and no error.

`sample()` is the one-shot entry point (`paglets sys load`, tests); a long-lived caller
(the host's `ResourceMonitor`) keeps a `CpuMeter` so CPU use is measured between its own
samples instead of by sleeping.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = [
    "GPU_QUERY",
    "CpuMeter",
    "GpuProbe",
    "GpuReading",
    "GpuSelection",
    "GpuSpec",
    "GpuUsage",
    "HostLoad",
    "HostResources",
    "HostSpec",
    "automatic_properties",
    "eligible_cpu_ids",
    "parse_gpu_selection",
    "parse_nvidia_smi",
    "sample",
]

# jobs.md §1.2: the one query, CSV without header or units.
GPU_QUERY = "index,uuid,name,memory.total,memory.used,utilization.gpu"
GPU_TIMEOUT = 2.0
GPU_INTERVAL = 10.0


# -- GPUs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One NVIDIA device as the spec part describes it (`jobs.md` §1.1)."""

    index: int
    uuid: str
    name: str
    memory_total_mb: int


@dataclass(frozen=True, slots=True)
class GpuUsage:
    """One device's use at the last `nvidia-smi` run."""

    index: int
    memory_used_mb: int
    utilization_percent: int


@dataclass(frozen=True, slots=True)
class GpuReading:
    """The outcome of the last `nvidia-smi` run. `error` is set when it failed (the devices
    of the last good run are kept, so running leases go on); `present` is False on a
    machine without `nvidia-smi` (no GPUs, no error)."""

    gpus: tuple[GpuSpec, ...] = ()
    usage: tuple[GpuUsage, ...] = ()
    driver_version: str | None = None
    error: str | None = None
    present: bool = False
    sampled_at: float = 0.0


@dataclass(frozen=True, slots=True)
class GpuSelection:
    """Which devices are offered (`--gpus auto|none|LIST`). `items` are indices or UUIDs
    (a UUID prefix of at least 8 characters is enough)."""

    mode: str = "auto"  # auto | none | list
    items: tuple[str, ...] = ()

    def allows(self, gpu: GpuSpec) -> bool:
        if self.mode == "none":
            return False
        if self.mode == "auto":
            return True
        return any(_names_gpu(item, gpu) for item in self.items)


def _names_gpu(item: str, gpu: GpuSpec) -> bool:
    if item.isdigit():
        return int(item) == gpu.index
    wanted = item.lower()
    return gpu.uuid.lower() == wanted or (len(wanted) >= 8 and gpu.uuid.lower().startswith(wanted))


def parse_gpu_selection(text: str | None) -> GpuSelection:
    """`auto` (or None), `none`, or a comma-separated list of indices/UUIDs. A bad value is
    `ValueError` naming the flag, so the CLI can print it as a usage error."""
    if text is None or text.strip().lower() in ("", "auto"):
        return GpuSelection()
    value = text.strip()
    if value.lower() == "none":
        return GpuSelection("none")
    items = tuple(part.strip() for part in value.split(","))
    for item in items:
        if not item or not all(c.isalnum() or c == "-" for c in item):
            raise ValueError(
                f'--gpus: cannot read "{text}": give auto, none, or device indices or UUIDs '
                "separated by commas (examples: --gpus 0,1, --gpus GPU-8f3a2b1c)"
            )
    return GpuSelection("list", items)


def _visible_devices(value: str | None) -> GpuSelection:
    """The host's own `CUDA_VISIBLE_DEVICES` as a selection (unset: all; empty: none).
    CUDA stops at the first entry it cannot read; so do we."""
    if value is None:
        return GpuSelection()
    items: list[str] = []
    for part in value.split(","):
        part = part.strip()
        if not part or part.startswith("-") or not all(c.isalnum() or c == "-" for c in part):
            break
        items.append(part)
    return GpuSelection("list", tuple(items)) if items else GpuSelection("none")


def _number(text: str) -> int:
    """nvidia-smi prints `[N/A]` or `[Not Supported]` for what a device does not report."""
    try:
        return int(float(text))
    except ValueError:
        return 0


def parse_nvidia_smi(output: str) -> tuple[tuple[GpuSpec, ...], tuple[GpuUsage, ...]]:
    """Devices and their use from `nvidia-smi --query-gpu=GPU_QUERY --format=csv,noheader,
    nounits`. A name may hold commas, so the fields are taken from both ends."""
    specs: list[GpuSpec] = []
    usage: list[GpuUsage] = []
    for line in output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        index = int(parts[0])
        name = ", ".join(parts[2:-3])
        total, used, util = (_number(p) for p in parts[-3:])
        specs.append(GpuSpec(index, parts[1], name, total))
        usage.append(GpuUsage(index, used, util))
    return tuple(specs), tuple(usage)


class GpuProbe:
    """Runs `nvidia-smi` on its own thread at start and every `interval`; `latest` is the
    cached reading with only the offered devices (`selection` and `CUDA_VISIBLE_DEVICES`).

    `command=None` (or a command not on PATH) means no GPUs: no thread, no error."""

    def __init__(
        self,
        selection: GpuSelection | str | None = None,
        *,
        command: str | None = "nvidia-smi",
        interval: float = GPU_INTERVAL,
        timeout: float = GPU_TIMEOUT,
        cuda_visible_devices: str | None = None,
        use_environment: bool = True,
    ) -> None:
        if not isinstance(selection, GpuSelection):
            selection = parse_gpu_selection(selection)
        self.selection = selection
        visible = cuda_visible_devices
        if visible is None and use_environment:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.visible = _visible_devices(visible)
        self.command = None if command is None else shutil.which(command)
        self.interval = interval
        self.timeout = timeout
        self._latest = GpuReading(present=self.command is not None)
        self._driver_asked = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def latest(self) -> GpuReading:
        return self._latest

    def offered(self, gpu: GpuSpec) -> bool:
        return self.selection.allows(gpu) and self.visible.allows(gpu)

    def poll(self) -> GpuReading:
        """Run `nvidia-smi` once (blocking, at most `timeout`) and cache the reading."""
        if self.command is None or self.selection.mode == "none":
            self._latest = GpuReading(present=self.command is not None, sampled_at=time.time())
            return self._latest
        previous = self._latest
        try:
            done = subprocess.run(
                [self.command, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = f"nvidia-smi failed: {exc}"
        else:
            if done.returncode == 0:
                specs, usage = parse_nvidia_smi(done.stdout)
                kept = {g.index for g in specs if self.offered(g)}
                self._latest = GpuReading(
                    tuple(g for g in specs if g.index in kept),
                    tuple(u for u in usage if u.index in kept),
                    self._driver_version() or previous.driver_version,
                    None,
                    True,
                    time.time(),
                )
                return self._latest
            detail = (done.stderr or done.stdout).strip().splitlines()
            error = f"nvidia-smi exited with {done.returncode}" + (
                f": {detail[0]}" if detail else ""
            )
        # Failing: keep the devices of the last good run, report the sampler broken.
        self._latest = GpuReading(
            previous.gpus, (), previous.driver_version, error, True, time.time()
        )
        return self._latest

    def _driver_version(self) -> str | None:
        """The driver version (the automatic `cuda_driver` property), asked once."""
        if self._driver_asked or self.command is None:
            return None
        self._driver_asked = True
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run(
                [self.command, "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            lines = done.stdout.strip().splitlines()
            if done.returncode == 0 and lines:
                return lines[0].strip() or None
        return None

    def start(self) -> None:
        """Poll now (on the worker thread) and every `interval` until `stop()`."""
        if self.command is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="paglets-gpu-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.timeout + 1.0)


# -- CPUs ---------------------------------------------------------------------------------


def eligible_cpu_ids() -> tuple[tuple[int, ...], bool]:
    """The CPU ids this process may run on, and whether affinity can be set at all (Linux
    `sched_getaffinity`; psutil's `cpu_affinity` on Windows/FreeBSD; else all CPUs)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is not None:
        with contextlib.suppress(OSError):
            return tuple(sorted(getter(0))), True
    process = psutil.Process()
    if hasattr(process, "cpu_affinity"):
        with contextlib.suppress(psutil.Error, OSError):
            return tuple(sorted(process.cpu_affinity())), True
    return tuple(range(psutil.cpu_count(logical=True) or 1)), False


def _busy_and_total(times: object) -> tuple[float, float]:
    # As psutil computes it: guest time is already counted in user time on Linux.
    total = sum(times)  # type: ignore[call-overload]
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = getattr(times, "idle", 0.0) + getattr(times, "iowait", 0.0)
    return total - idle, total


class CpuMeter:
    """Per-CPU busy fractions between two calls of `measure()`, from the kernel's CPU
    times. Independent of psutil's process-global `cpu_percent` state, so several hosts in
    one process do not steal each other's intervals."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = [_busy_and_total(t) for t in psutil.cpu_times(percpu=True)]

    def measure(self) -> list[float]:
        """Busy fraction (0..1) of each CPU since the previous call (or construction)."""
        now = [_busy_and_total(t) for t in psutil.cpu_times(percpu=True)]
        out = []
        for (busy0, total0), (busy1, total1) in zip(self._last, now, strict=False):
            span = total1 - total0
            out.append(min(1.0, max(0.0, (busy1 - busy0) / span)) if span > 0 else 0.0)
        self._last = now
        return out


# -- the sample ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostSpec:
    """What changes rarely: the machine (jobs.md §1.1, spec part, without identity)."""

    platform: str
    arch: str
    python_version: str
    logical_cpus: int
    eligible_cpu_ids: tuple[int, ...]
    job_cpu_ids: tuple[int, ...]
    cpu_affinity_supported: bool
    memory_total_bytes: int
    swap_total_bytes: int
    temp_path: str
    temp_total_bytes: int
    gpus: tuple[GpuSpec, ...]
    boot_time: float


@dataclass(frozen=True, slots=True)
class HostLoad:
    """What is measured at each sample. `busy_cores` is the sum of the eligible CPUs' busy
    fractions since the previous sample; `errors` names failed samplers (`gpu`, `disk`)."""

    memory_available_bytes: int
    memory_percent: float
    swap_percent: float
    temp_free_bytes: int
    cpu_percent: float
    busy_cores: float
    load_average: tuple[float, float, float]
    load_per_cpu: float
    gpus: tuple[GpuUsage, ...] = ()
    gpu_error: str | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostResources:
    """One sample of this host: its spec and its load, taken at `sampled_at` (epoch s)."""

    spec: HostSpec
    load: HostLoad
    sampled_at: float = field(default_factory=time.time)


def _existing(path: Path) -> Path:
    """`path` or its nearest existing parent (the volume is the same)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(os.sep)


def _disk(path: Path) -> tuple[int, int] | None:
    try:
        usage = psutil.disk_usage(str(_existing(path)))
    except OSError:
        return None
    return int(usage.total), int(usage.free)


def sample(
    temp_path: str | Path | None = None,
    *,
    reserved_cores: int = 0,
    gpu: GpuProbe | None = None,
    cpu: CpuMeter | None = None,
    cpu_interval: float = 0.1,
) -> HostResources:
    """Measure this host now.

    `temp_path` is the directory whose volume holds job work dirs (default: the system's
    temp dir). `reserved_cores` lowest eligible CPUs are kept for the OS (not in
    `job_cpu_ids`). GPUs are read from `gpu.latest` (never run here). Without a `cpu` meter
    the CPU use is measured over `cpu_interval` seconds (this call sleeps that long)."""
    import tempfile

    errors: list[str] = []
    eligible, affinity = eligible_cpu_ids()
    logical = psutil.cpu_count(logical=True) or len(eligible)
    reserved = max(0, min(int(reserved_cores), len(eligible) - 1))
    job_ids = eligible[reserved:]

    if cpu is None:
        cpu = CpuMeter()
        time.sleep(max(0.0, cpu_interval))
    fractions = cpu.measure()
    ids = eligible if eligible and max(eligible) < len(fractions) else range(len(fractions))
    busy = sum(fractions[i] for i in ids)
    counted = len(ids) or 1
    try:
        load_average = tuple(float(x) for x in psutil.getloadavg())
    except (OSError, AttributeError):
        load_average = (0.0, 0.0, 0.0)

    memory = psutil.virtual_memory()
    try:
        swap = psutil.swap_memory()
        swap_total, swap_percent = int(swap.total), float(swap.percent)
    except (OSError, RuntimeError):
        swap_total, swap_percent = 0, 0.0

    temp = Path(temp_path) if temp_path is not None else Path(tempfile.gettempdir())
    disk = _disk(temp)
    if disk is None:
        errors.append("disk")
        disk = (0, 0)

    reading = gpu.latest if gpu is not None else GpuReading()
    if reading.error is not None:
        errors.append("gpu")
    spec = HostSpec(
        platform=sys.platform,
        arch=platform.machine().lower(),
        python_version=platform.python_version(),
        logical_cpus=int(logical),
        eligible_cpu_ids=eligible,
        job_cpu_ids=job_ids,
        cpu_affinity_supported=affinity,
        memory_total_bytes=int(memory.total),
        swap_total_bytes=swap_total,
        temp_path=str(temp),
        temp_total_bytes=disk[0],
        gpus=reading.gpus,
        boot_time=float(psutil.boot_time()),
    )
    load = HostLoad(
        memory_available_bytes=int(memory.available),
        memory_percent=float(memory.percent),
        swap_percent=swap_percent,
        temp_free_bytes=disk[1],
        cpu_percent=100.0 * busy / counted,
        busy_cores=busy,
        load_average=load_average,  # type: ignore[arg-type]
        load_per_cpu=load_average[0] / max(1, len(eligible)),
        gpus=reading.usage,
        gpu_error=reading.error,
        errors=tuple(errors),
    )
    return HostResources(spec, load)


_AUTOMATIC: dict[str, str] | None = None


def automatic_properties() -> dict[str, str]:
    """The properties every host has (jobs.md §1.3): `python`, `paglets`, `os`, `arch`
    (`cuda_driver` is added once `nvidia-smi` has answered). `--property` overrides them."""
    global _AUTOMATIC
    if _AUTOMATIC is None:
        import paglets

        _AUTOMATIC = {
            "python": platform.python_version(),
            "paglets": paglets.__version__,
            "os": sys.platform,
            "arch": platform.machine().lower(),
        }
    return dict(_AUTOMATIC)
