"""The host summary on the wire (jobs.md §1.1, §1.4): a `spec` body that is pulled once
per version, and a `load` body that rides on membership messages.

Loads are many (one per busy host, every 2 s) and each must stay near 100 bytes, so the
load body uses one- or two-letter keys and small integers: memory and temp as 64ths of the
spec's totals, CPU % in steps of 5, load and busy cores in quarters, GPU memory in 256 MB
units, and fields at their default are left out. Rounding this coarsely also means a body
changes only on a real change, so an idle host sends nothing at all.

`LoadSummary` is the same load with the field names of jobs.md; `resources_view` is what
`HostRef.resources`, `/mesh/members` and `/health` show. Pure code: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LOAD_KEYS",
    "LoadSummary",
    "decode_load",
    "encode_load",
    "resources_view",
]

FRACTION = 64  # memory and temp: 64ths of the total
GPU_MEMORY_UNIT_MB = 256
CPU_PERCENT_STEP = 5

# Wire key → LoadSummary field (jobs.md §1.1, load part; the counts feed HostRef).
LOAD_KEYS: dict[str, str] = {
    "c": "free_cpu_cores",
    "m": "free_memory_bytes",
    "t": "free_temp_bytes",
    "g": "free_gpus",
    "x": "external_busy_cores",
    "r": "running_jobs",
    "q": "queue_length",
    "s": "queued_core_seconds",
    "n": "next_release_seconds",
    "p": "cpu_percent",
    "l": "load_per_cpu",
    "a": "accepting",
    "e": "errors",
    "A": "active_count",
    "I": "inactive_count",
    "gm": "gpu_memory_used_mb",
    "gu": "gpu_utilization_percent",
}


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """A host's load part with jobs.md's names. Values are as rounded on the wire once
    they have been through `encode_load`/`decode_load`."""

    free_cpu_cores: int = 0
    free_memory_bytes: int | None = 0
    free_temp_bytes: int | None = 0
    free_gpus: int = 0
    external_busy_cores: float = 0.0
    running_jobs: int = 0
    queue_length: int = 0
    queued_core_seconds: int = 0
    next_release_seconds: int | None = None
    cpu_percent: int = 0
    load_per_cpu: float = 0.0
    accepting: bool = True
    errors: tuple[str, ...] = ()
    active_count: int = 0
    inactive_count: int = 0
    gpu_memory_used_mb: tuple[int, ...] = ()
    gpu_utilization_percent: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["errors"] = list(self.errors)
        out["gpu_memory_used_mb"] = list(self.gpu_memory_used_mb)
        out["gpu_utilization_percent"] = list(self.gpu_utilization_percent)
        return out


def _quarters(value: float) -> int:
    return max(0, round(float(value) * 4))


def _fraction(part: int | None, total: int) -> int:
    if part is None or total <= 0:
        return 0
    # Rounded down: a summary never promises more than is free.
    return max(0, min(FRACTION, int(part) * FRACTION // total))


def encode_load(
    load: LoadSummary, memory_total_bytes: int, temp_total_bytes: int
) -> dict[str, Any]:
    """The compact wire body of `load` (totals from this host's spec)."""
    body: dict[str, Any] = {
        "c": max(0, int(load.free_cpu_cores)),
        "m": _fraction(load.free_memory_bytes, memory_total_bytes),
        "t": _fraction(load.free_temp_bytes, temp_total_bytes),
        "p": CPU_PERCENT_STEP * round(float(load.cpu_percent) / CPU_PERCENT_STEP),
        "l": _quarters(load.load_per_cpu),
    }
    optional: tuple[tuple[str, Any, Any], ...] = (
        ("g", int(load.free_gpus), 0),
        ("x", _quarters(load.external_busy_cores), 0),
        ("r", int(load.running_jobs), 0),
        ("q", int(load.queue_length), 0),
        ("s", round(load.queued_core_seconds), 0),
        (
            "n",
            None if load.next_release_seconds is None else round(load.next_release_seconds),
            None,
        ),
        ("a", bool(load.accepting), True),
        ("e", sorted(set(load.errors)), []),
        ("A", int(load.active_count), 0),
        ("I", int(load.inactive_count), 0),
        ("gm", [round(mb / GPU_MEMORY_UNIT_MB) for mb in load.gpu_memory_used_mb], []),
        (
            "gu",
            [CPU_PERCENT_STEP * round(u / CPU_PERCENT_STEP) for u in load.gpu_utilization_percent],
            [],
        ),
    )
    for key, value, default in optional:
        if value != default:
            body[key] = value
    return body


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def decode_load(
    body: dict[str, Any], memory_total_bytes: int | None, temp_total_bytes: int | None
) -> LoadSummary:
    """`LoadSummary` from a wire body; byte values are None while the sender's spec (and
    so its totals) is not known here. Unknown keys are ignored (newer senders)."""

    def part(key: str, total: int | None) -> int | None:
        if not total or key not in body:
            return None
        return _int(body[key]) * int(total) // FRACTION

    nxt = body.get("n")
    errors = body.get("e")
    return LoadSummary(
        free_cpu_cores=_int(body.get("c")),
        free_memory_bytes=part("m", memory_total_bytes),
        free_temp_bytes=part("t", temp_total_bytes),
        free_gpus=_int(body.get("g")),
        external_busy_cores=_int(body.get("x")) / 4,
        running_jobs=_int(body.get("r")),
        queue_length=_int(body.get("q")),
        queued_core_seconds=_int(body.get("s")),
        next_release_seconds=None if nxt is None else _int(nxt),
        cpu_percent=_int(body.get("p")),
        load_per_cpu=_int(body.get("l")) / 4,
        accepting=body.get("a", True) is not False,
        errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
        active_count=_int(body.get("A")),
        inactive_count=_int(body.get("I")),
        gpu_memory_used_mb=tuple(_int(v) * GPU_MEMORY_UNIT_MB for v in body.get("gm") or ()),
        gpu_utilization_percent=tuple(_int(v) for v in body.get("gu") or ()),
    )


_SPEC_SHOWN = (
    "platform",
    "arch",
    "python_version",
    "logical_cpus",
    "memory_total_bytes",
    "temp_total_bytes",
    "gpus",
    "policy",
)


def resources_view(
    spec: dict[str, Any] | None,
    load: dict[str, Any] | None,
    *,
    spec_version: int | None = None,
    load_age_s: float | None = None,
) -> dict[str, Any]:
    """One flat dict of a host's resources with jobs.md's names (`HostRef.resources`):
    the spec's machine fields, `job_cores`, and the decoded load. Missing parts are left
    out (a host whose spec has not arrived shows its load without byte values)."""
    out: dict[str, Any] = {}
    memory_total = temp_total = None
    if spec:
        for key in _SPEC_SHOWN:
            if key in spec:
                out[key] = spec[key]
        out["job_cores"] = len(spec.get("job_cpu_ids") or ())
        memory_total = _int(spec.get("memory_total_bytes")) or None
        temp_total = _int(spec.get("temp_total_bytes")) or None
    if spec_version is not None:
        out["spec_version"] = spec_version
    if load is not None:
        out.update(decode_load(load, memory_total, temp_total).to_dict())
        if load_age_s is not None:
            out["load_age_s"] = round(load_age_s, 3)
    return out
