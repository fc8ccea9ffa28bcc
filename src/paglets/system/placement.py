"""Choosing hosts from the local membership table (jobs.md §1.4, §2.12, §6): filters and
the `candidate_hosts` ranking, as pure functions over host summaries.

Placement never asks other hosts: every member's spec and load ride on membership gossip,
so a `HostSummary` is built from the local `HostRef`s (`HostSummary.from_host_ref`). Then:

* **hard filters** reject a host that can never take the work: not alive, incompatible,
  draining, excluded, a required tag missing or an excluded tag present, a property
  constraint failing (`host_properties`), the host's totals (minus the OS headroom) or its
  policy too small;
* **gates** reject a busy host when the caller asks for them: `max_load_per_cpu`,
  `max_cpu_percent`, a load summary older than `max_age_seconds`, and with
  `require_fit_now` the free resources right now (`mesh-info select` applies them all;
  `candidate_hosts` keeps busy hosts and ranks them by expected start instead);
* the **ranking** (ascending) is jobs.md §2.12's: fits now first; expected start in 30 s
  buckets; `score = (1 - free_cores/job_cores) + (1 - free_mem/mem_total) + (1 -
  free_temp/temp_total) + 0.1 * queue_length - min(0.75, 0.25 * preferred tags matched)`,
  + 0.5 when work without GPUs would take a host with a free GPU; then name and id.

Every rejected host keeps all of its reasons, so a caller can show why each was left out.
A fallback (a host failing only gates) is offered only with `allow_fallback=True` and
marked as such (paglets 2.0 mixed fallbacks into its answers silently).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paglets.system.host_properties import Constraint, lower_keys, parse_constraints

__all__ = [
    "FALLBACK_CODES",
    "HostRejection",
    "HostSummary",
    "Placement",
    "PlacementNeeds",
    "PlacementReason",
    "RankedHost",
    "expected_start_seconds",
    "fits_now",
    "memory_headroom",
    "rank_hosts",
    "rejection_reasons",
    "score_host",
    "spread_pick",
    "temp_headroom",
]

GiB = 1024**3
START_BUCKET = 30.0  # seconds: expected starts closer than this rank alike
SPREAD_WIDTH = 3

# Reasons that only say "busy or not heard of lately": such a host may be a fallback.
FALLBACK_CODES = frozenset(
    {
        "load",
        "cpu-percent",
        "stale",
        "no-summary",
        "cores-now",
        "memory-now",
        "temp-now",
        "gpus-now",
    }
)


def memory_headroom(total: int) -> int:
    """Memory kept for the OS and the host: min(10 % of RAM, 4 GiB) (jobs.md §2.2)."""
    return min(total // 10, 4 * GiB)


def temp_headroom(total: int) -> int:
    """Temp storage kept free: min(5 % of the volume, 10 GiB) (jobs.md §2.2)."""
    return min(total // 20, 10 * GiB)


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return int(value)


def _float(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def _norm_url(url: str) -> str:
    return url.rstrip("/").lower()


@dataclass(frozen=True, slots=True)
class HostSummary:
    """One member as placement sees it: identity, liveness, spec totals and load.

    `age_seconds` is how old the load part is on this host's clock (None: no load heard
    yet); byte values are None while the member's spec (and so its totals) is unknown.
    `properties` keys are lower-case.
    """

    host_id: str
    host_name: str
    url: str
    status: str = "alive"
    error: str | None = None
    is_self: bool = False
    code_version: str | None = None
    age_seconds: float | None = 0.0
    tags: frozenset[str] = frozenset()
    properties: Mapping[str, str] = field(default_factory=dict)
    spec_known: bool = True  # False until the member's spec (its totals) has been heard
    logical_cpus: int = 0
    job_cpu_cores: int = 0
    memory_total_bytes: int = 0
    temp_total_bytes: int = 0
    gpu_memory_total_mb: tuple[int, ...] = ()
    free_cpu_cores: int = 0
    free_memory_bytes: int | None = None
    free_temp_bytes: int | None = None
    free_gpus: int = 0
    running_jobs: int = 0
    queue_length: int = 0
    queued_core_seconds: float = 0.0
    next_release_seconds: float | None = None
    cpu_percent: float = 0.0
    load_per_cpu: float = 0.0
    accepting: bool = True
    errors: tuple[str, ...] = ()
    active_count: int = 0
    inactive_count: int = 0
    policy: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gpus_total(self) -> int:
        return len(self.gpu_memory_total_mb)

    @property
    def online(self) -> bool:
        return self.status == "alive"

    @classmethod
    def from_host_ref(
        cls, ref: Any, *, local_url: str | None = None, local_version: str | None = None
    ) -> HostSummary:
        """From a `HostRef` (`Host.list_hosts()`), whose `resources` is jobs.md's flat view.
        `local_url` marks this host; `local_version` turns another code version into an
        incompatibility."""
        resources: Mapping[str, Any] = getattr(ref, "resources", None) or {}
        url = str(ref.url)
        is_self = local_url is not None and _norm_url(url) == _norm_url(local_url)
        error = getattr(ref, "error", None)
        version = getattr(ref, "code_version", None)
        if (
            error is None
            and local_version is not None
            and version is not None
            and version != local_version
        ):
            error = f"code version {version!r}, this host runs {local_version!r}"
        has_load = "free_cpu_cores" in resources
        if is_self:
            age: float | None = 0.0 if has_load else None
        elif has_load:
            age = _float(resources.get("load_age_s"), 0.0)
        else:
            age = None
        gpus = resources.get("gpus") or ()
        next_release = resources.get("next_release_seconds")
        free_memory = resources.get("free_memory_bytes")
        free_temp = resources.get("free_temp_bytes")
        return cls(
            host_id=str(getattr(ref, "host_id", None) or ""),
            host_name=str(ref.name),
            url=url,
            status=str(getattr(ref, "status", "alive") or "alive"),
            error=error,
            is_self=is_self,
            code_version=version,
            age_seconds=age,
            tags=frozenset(str(t).lower() for t in getattr(ref, "tags", ()) or ()),
            properties=lower_keys(getattr(ref, "properties", None) or {}),
            spec_known="logical_cpus" in resources or "job_cores" in resources,
            logical_cpus=_int(resources.get("logical_cpus")),
            job_cpu_cores=_int(resources.get("job_cores", resources.get("logical_cpus"))),
            memory_total_bytes=_int(resources.get("memory_total_bytes")),
            temp_total_bytes=_int(resources.get("temp_total_bytes")),
            gpu_memory_total_mb=tuple(
                _int(g.get("memory_total_mb")) if isinstance(g, Mapping) else 0 for g in gpus
            ),
            free_cpu_cores=_int(resources.get("free_cpu_cores")),
            free_memory_bytes=None if free_memory is None else _int(free_memory),
            free_temp_bytes=None if free_temp is None else _int(free_temp),
            free_gpus=_int(resources.get("free_gpus")),
            running_jobs=_int(resources.get("running_jobs")),
            queue_length=_int(resources.get("queue_length")),
            queued_core_seconds=_float(resources.get("queued_core_seconds")),
            next_release_seconds=None if next_release is None else _float(next_release),
            cpu_percent=_float(resources.get("cpu_percent")),
            load_per_cpu=_float(resources.get("load_per_cpu")),
            accepting=resources.get("accepting", True) is not False,
            errors=tuple(str(e) for e in resources.get("errors") or ()),
            active_count=_int(getattr(ref, "active_count", 0)),
            inactive_count=_int(getattr(ref, "inactive_count", 0)),
            policy=dict(resources.get("policy") or {}),
        )


def _lower_tuple(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        text = str(value).strip().lower()
        if text and text not in out:
            out.append(text)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PlacementNeeds:
    """What the work needs and which hosts it accepts.

    Resources are amounts (0 = none). `required_properties` are constraint texts, parsed
    here: a bad one raises `ValueError` at construction (jobs.md §1.3: invalid constraints
    fail when the job is made). `excluded_hosts` are names, URLs or host ids. The gates
    `max_age_seconds`, `max_load_per_cpu` and `max_cpu_percent` are off when None;
    `require_fit_now` rejects hosts without the free resources right now.
    """

    cpu_cores: int = 0
    memory_bytes: int = 0
    temp_bytes: int = 0
    gpus: int = 0
    gpu_memory_mb: int = 0
    required_tags: tuple[str, ...] = ()
    excluded_tags: tuple[str, ...] = ()
    preferred_tags: tuple[str, ...] = ()
    required_properties: tuple[str, ...] = ()
    excluded_hosts: tuple[str, ...] = ()
    include_self: bool = True
    max_age_seconds: float | None = None
    max_load_per_cpu: float | None = None
    max_cpu_percent: float | None = None
    require_fit_now: bool = False
    constraints: tuple[Constraint, ...] = field(default=(), init=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("cpu_cores", "memory_bytes", "temp_bytes", "gpus", "gpu_memory_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"PlacementNeeds.{name} must be an int >= 0, got {value!r}")
        for name in ("max_age_seconds", "max_load_per_cpu", "max_cpu_percent"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise ValueError(
                    f"PlacementNeeds.{name} must be a number >= 0 or None (off), got {value!r}"
                )
        set_ = object.__setattr__
        set_(self, "required_tags", _lower_tuple(self.required_tags))
        set_(self, "excluded_tags", _lower_tuple(self.excluded_tags))
        set_(self, "preferred_tags", _lower_tuple(self.preferred_tags))
        set_(self, "required_properties", tuple(self.required_properties))
        set_(self, "excluded_hosts", tuple(self.excluded_hosts))
        set_(self, "constraints", parse_constraints(self.required_properties))

    @property
    def wants_gpu(self) -> bool:
        return self.gpus > 0


@dataclass(frozen=True, slots=True)
class PlacementReason:
    """Why a host was left out: a stable `code` (see `FALLBACK_CODES` for the soft ones)
    and a sentence naming the need and what the host has."""

    code: str
    message: str

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class RankedHost:
    """A candidate: its summary, whether it fits now, the expected start (bucketed), the
    score (lower is better) and, for a fallback, the reasons it would have been left out."""

    host: HostSummary
    fits_now: bool
    expected_start_seconds: float
    score: float
    fallback: bool = False
    reasons: tuple[PlacementReason, ...] = ()

    def sort_key(self) -> tuple[Any, ...]:
        return (
            self.fallback,
            not self.fits_now,
            self.expected_start_seconds,
            self.score,
            self.host.host_name,
            self.host.host_id,
        )


@dataclass(frozen=True, slots=True)
class HostRejection:
    host: HostSummary
    reasons: tuple[PlacementReason, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    """The ranked candidates (best first, cut to the limit) and every rejected host."""

    candidates: tuple[RankedHost, ...] = ()
    rejected: tuple[HostRejection, ...] = ()

    @property
    def best(self) -> RankedHost | None:
        return self.candidates[0] if self.candidates else None


# -- filters -------------------------------------------------------------------------------


def _size(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _excluded(host: HostSummary, excluded: Sequence[str]) -> str | None:
    url = _norm_url(host.url)
    for item in excluded:
        if item in (host.host_name, host.host_id) or _norm_url(item) == url:
            return item
    return None


def _identity_reasons(host: HostSummary, needs: PlacementNeeds) -> list[PlacementReason]:
    out = []
    if not host.online:
        out.append(PlacementReason("offline", f"host is {host.status}"))
    if host.error:
        out.append(PlacementReason("incompatible", host.error))
    if host.is_self and not needs.include_self:
        out.append(PlacementReason("self", "this host is excluded (include_self is off)"))
    named = _excluded(host, needs.excluded_hosts)
    if named is not None:
        out.append(PlacementReason("excluded", f"excluded by name ({named})"))
    if not host.accepting:
        out.append(PlacementReason("draining", "host is draining (not accepting work)"))
    return out


def _label_reasons(host: HostSummary, needs: PlacementNeeds) -> list[PlacementReason]:
    out = []
    missing = [t for t in needs.required_tags if t not in host.tags]
    if missing:
        out.append(PlacementReason("missing-tag", f"missing tag {', '.join(missing)}"))
    present = [t for t in needs.excluded_tags if t in host.tags]
    if present:
        out.append(PlacementReason("excluded-tag", f"has excluded tag {', '.join(present)}"))
    for constraint in needs.constraints:
        failure = constraint.failure(host.properties)
        if failure is not None:
            out.append(PlacementReason("property", failure))
    return out


def _capacity_reasons(host: HostSummary, needs: PlacementNeeds) -> list[PlacementReason]:
    """Can the host ever take it: totals minus headroom, and its policy."""
    out = []
    policy = host.policy
    if needs.cpu_cores and policy.get("cpu_jobs") is False and not needs.wants_gpu:
        out.append(PlacementReason("cpu-jobs", "host takes no CPU jobs"))
    if needs.wants_gpu and policy.get("gpu_jobs") is False:
        out.append(PlacementReason("gpu-jobs", "host takes no GPU jobs"))
    cores_limit = host.job_cpu_cores
    max_cores = _int(policy.get("max_job_cores"), 0)
    if max_cores:
        cores_limit = min(cores_limit, max_cores)
    if needs.cpu_cores and needs.cpu_cores > cores_limit:
        out.append(
            PlacementReason("cores", f"needs {needs.cpu_cores} cores, host has {cores_limit}")
        )
    if needs.memory_bytes:
        usable = host.memory_total_bytes - memory_headroom(host.memory_total_bytes)
        if needs.memory_bytes > usable:
            out.append(
                PlacementReason(
                    "memory",
                    f"needs {_size(needs.memory_bytes)} memory, host has {_size(max(0, usable))}",
                )
            )
    if needs.temp_bytes:
        usable = host.temp_total_bytes - temp_headroom(host.temp_total_bytes)
        if needs.temp_bytes > usable:
            out.append(
                PlacementReason(
                    "temp",
                    f"needs {_size(needs.temp_bytes)} temp, host has {_size(max(0, usable))}",
                )
            )
    if needs.gpus:
        fitting = [m for m in host.gpu_memory_total_mb if m >= needs.gpu_memory_mb]
        if len(host.gpu_memory_total_mb) < needs.gpus:
            out.append(
                PlacementReason("gpus", f"needs {needs.gpus} GPUs, host has {host.gpus_total}")
            )
        elif len(fitting) < needs.gpus:
            out.append(
                PlacementReason(
                    "gpu-memory",
                    f"needs {needs.gpus} GPUs with {needs.gpu_memory_mb} MB, host has "
                    f"{len(fitting)}",
                )
            )
    return out


def _gate_reasons(host: HostSummary, needs: PlacementNeeds) -> list[PlacementReason]:
    out = []
    if host.age_seconds is None:
        if needs.max_age_seconds is not None or needs.require_fit_now:
            out.append(PlacementReason("no-summary", "no load summary heard from this host yet"))
        return out
    if needs.max_age_seconds is not None and host.age_seconds > needs.max_age_seconds:
        out.append(
            PlacementReason(
                "stale",
                f"load summary is {host.age_seconds:.0f}s old (max {needs.max_age_seconds:g}s)",
            )
        )
    if needs.max_load_per_cpu is not None and host.load_per_cpu > needs.max_load_per_cpu:
        out.append(
            PlacementReason(
                "load",
                f"load per CPU {host.load_per_cpu:.2f} > {needs.max_load_per_cpu:g}",
            )
        )
    if needs.max_cpu_percent is not None and host.cpu_percent > needs.max_cpu_percent:
        out.append(
            PlacementReason(
                "cpu-percent", f"CPU {host.cpu_percent:.0f}% > {needs.max_cpu_percent:g}%"
            )
        )
    if needs.require_fit_now:
        out.extend(_busy_reasons(host, needs))
    return out


def _busy_reasons(host: HostSummary, needs: PlacementNeeds) -> list[PlacementReason]:
    out = []
    if needs.cpu_cores > host.free_cpu_cores:
        out.append(
            PlacementReason(
                "cores-now", f"needs {needs.cpu_cores} free cores, host has {host.free_cpu_cores}"
            )
        )
    free_memory = host.free_memory_bytes or 0
    if needs.memory_bytes > free_memory:
        out.append(
            PlacementReason(
                "memory-now",
                f"needs {_size(needs.memory_bytes)} free memory, host has {_size(free_memory)}",
            )
        )
    free_temp = host.free_temp_bytes or 0
    if needs.temp_bytes > free_temp:
        out.append(
            PlacementReason(
                "temp-now",
                f"needs {_size(needs.temp_bytes)} free temp, host has {_size(free_temp)}",
            )
        )
    if needs.gpus > host.free_gpus:
        out.append(
            PlacementReason("gpus-now", f"needs {needs.gpus} free GPUs, host has {host.free_gpus}")
        )
    return out


def rejection_reasons(host: HostSummary, needs: PlacementNeeds) -> list[PlacementReason]:
    """Every reason `host` is left out for `needs` (empty: it is a candidate)."""
    if not host.spec_known:  # a member just heard of: its totals are still on their way
        return [
            *_identity_reasons(host, needs),
            *_label_reasons(host, needs),
            PlacementReason("no-summary", "no resource summary heard from this host yet"),
        ]
    return [
        *_identity_reasons(host, needs),
        *_label_reasons(host, needs),
        *_capacity_reasons(host, needs),
        *_gate_reasons(host, needs),
    ]


def fits_now(host: HostSummary, needs: PlacementNeeds) -> bool:
    """Whether the host's free resources cover `needs` right now."""
    return not _busy_reasons(host, needs) and host.age_seconds is not None


def expected_start_seconds(host: HostSummary, needs: PlacementNeeds) -> float:
    """0 when it fits now; else `max(next_release_seconds, queued_core_seconds /
    job_cores)` rounded up to 30 s (jobs.md §2.12)."""
    if fits_now(host, needs):
        return 0.0
    cores = max(1, host.job_cpu_cores)
    wait = max(host.next_release_seconds or 0.0, host.queued_core_seconds / cores)
    return max(START_BUCKET, math.ceil(wait / START_BUCKET) * START_BUCKET)


def _ratio(free: int | float | None, total: int | float) -> float:
    if total <= 0:
        return 1.0
    return 1.0 - min(1.0, max(0.0, float(free or 0)) / total)


def score_host(host: HostSummary, needs: PlacementNeeds) -> float:
    """jobs.md §2.12's score (lower is better)."""
    matched = sum(1 for t in needs.preferred_tags if t in host.tags)
    score = (
        _ratio(host.free_cpu_cores, host.job_cpu_cores)
        + _ratio(host.free_memory_bytes, host.memory_total_bytes)
        + _ratio(host.free_temp_bytes, host.temp_total_bytes)
        + 0.1 * host.queue_length
        - min(0.75, 0.25 * matched)
    )
    if not needs.wants_gpu and host.free_gpus > 0:
        score += 0.5  # keep GPU hosts for GPU work
    return round(score, 6)


def _ranked(
    host: HostSummary, needs: PlacementNeeds, reasons: Sequence[PlacementReason] = ()
) -> RankedHost:
    return RankedHost(
        host=host,
        fits_now=fits_now(host, needs),
        expected_start_seconds=expected_start_seconds(host, needs),
        score=score_host(host, needs),
        fallback=bool(reasons),
        reasons=tuple(reasons),
    )


def rank_hosts(
    hosts: Iterable[HostSummary],
    needs: PlacementNeeds,
    *,
    limit: int = 0,
    allow_fallback: bool = False,
) -> Placement:
    """Filter and rank `hosts` for `needs`: candidates best first (at most `limit`, 0 =
    all) and every rejected host with all its reasons. With `allow_fallback`, when no host
    qualifies, hosts that fail only gates (busy, loaded, stale) are offered, marked
    `fallback` and ranked after real candidates."""
    candidates: list[RankedHost] = []
    rejected: list[HostRejection] = []
    for host in hosts:
        reasons = rejection_reasons(host, needs)
        if reasons:
            rejected.append(HostRejection(host, tuple(reasons)))
        else:
            candidates.append(_ranked(host, needs))
    if not candidates and allow_fallback:
        for rejection in rejected:
            if all(r.code in FALLBACK_CODES for r in rejection.reasons):
                candidates.append(_ranked(rejection.host, needs, rejection.reasons))
    candidates.sort(key=RankedHost.sort_key)
    if limit > 0:
        candidates = candidates[:limit]
    rejected.sort(key=lambda r: (r.host.host_name, r.host.host_id))
    return Placement(tuple(candidates), tuple(rejected))


def spread_pick(
    candidates: Sequence[RankedHost], key: str, width: int = SPREAD_WIDTH
) -> RankedHost | None:
    """A deterministic pick among the best `width` candidates that share the first one's
    fit class and start bucket, by SHA-256 of `key` (a job id), so concurrent jobs spread
    over equally good hosts instead of all taking the first (jobs.md §2.12 `selected`)."""
    if not candidates:
        return None
    first = candidates[0]
    peers = [
        c
        for c in candidates[:width]
        if c.fits_now == first.fits_now
        and c.expected_start_seconds == first.expected_start_seconds
        and c.fallback == first.fallback
    ]
    digest = hashlib.sha256(key.encode()).digest()
    return peers[int.from_bytes(digest[:8], "big") % len(peers)]
