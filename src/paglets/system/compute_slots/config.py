"""The scheduler's tunables (`[services.compute-slots]` in the launch config, jobs.md §2).

Defaults are the spec's. paglets 2.0's `grant_interval`, `burst_*` and
`max_grants_per_tick` are accepted and ignored with a warning naming what replaced them,
so an old launch config still starts a host.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["GiB", "MEMORY_ENFORCEMENTS", "SchedulerConfig"]

_log = logging.getLogger(__name__)

GiB = 1024**3
MEMORY_ENFORCEMENTS = ("watchdog", "cgroup", "off")

# paglets 2.0 tunables that no longer exist, and what to use instead.
_REPLACED = {
    "grant_interval": "grants happen on every tick; use start_rate_per_second to pace starts",
    "max_grants_per_tick": "use start_burst and start_rate_per_second (the start throttle)",
}
_REPLACED_PREFIX = (
    "burst_",
    "use start_burst and start_rate_per_second; memory headroom is memory_headroom_*",
)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Every knob of the `compute-slots` scheduler; see jobs.md §2 for the meaning."""

    # admission headroom (§2.2): min(fraction x total, cap)
    memory_headroom_fraction: float = 0.10
    memory_headroom_max_bytes: int = 4 * GiB
    temp_headroom_fraction: float = 0.05
    temp_headroom_max_bytes: int = 10 * GiB
    respect_external_load: bool = True
    max_load_per_cpu: float = 0.0  # 0 = no load gate (the default, §2.2)
    max_active_leases: int = 0  # 0 = no limit
    # leases and holds (§2.3)
    lease_ttl_seconds: float = 60.0
    start_deadline_seconds: float = 60.0
    hold_ttl_seconds: float = 30.0
    # order (§2.5)
    aging_interval_seconds: float = 900.0
    aging_max_boost: int = 10
    fair_share: str = ""  # "" or "owner"
    reservation_depth: int = 1
    max_reservation_slip_seconds: float = 3600.0
    # start throttle (§2.6): 0 burst = max(4, cores / 2)
    start_burst: int = 0
    start_rate_per_second: float = 4.0
    # redirects (§2.7)
    redirect_cooldown_seconds: float = 60.0
    redirect_min_local_wait_seconds: float = 30.0
    max_redirects: int = 8
    redirect_budget_max: int = 4
    redirect_budget_fraction: float = 0.5
    peer_full_seconds: float = 10.0
    peer_max_age_seconds: float = 10.0
    shadow_seconds: float = 10.0
    # walltime and memory (§2.9)
    default_walltime_seconds: float = 0.0
    max_walltime_seconds: float = 0.0
    kill_grace_seconds: float = 10.0
    memory_enforcement: str = "watchdog"
    # history (§2.10)
    history_days: float = 30.0
    history_max_rows: int = 100_000
    usage_interval_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.memory_enforcement not in MEMORY_ENFORCEMENTS:
            raise ValueError(
                f"[services.compute-slots] memory_enforcement must be one of "
                f"{', '.join(MEMORY_ENFORCEMENTS)}, got {self.memory_enforcement!r}"
            )
        if self.fair_share not in ("", "owner"):
            raise ValueError(
                f"[services.compute-slots] fair_share must be '' or 'owner', got "
                f"{self.fair_share!r}"
            )
        if self.reservation_depth < 0 or self.start_rate_per_second <= 0:
            raise ValueError(
                "[services.compute-slots] reservation_depth must be >= 0 and "
                "start_rate_per_second > 0"
            )

    def burst_for(self, job_cores: int) -> int:
        """The start bucket's size: `start_burst`, else max(4, cores / 2)."""
        return self.start_burst if self.start_burst > 0 else max(4, math.ceil(job_cores / 2))

    def memory_headroom(self, total: int) -> int:
        return int(min(self.memory_headroom_fraction * total, self.memory_headroom_max_bytes))

    def temp_headroom(self, total: int) -> int:
        return int(min(self.temp_headroom_fraction * total, self.temp_headroom_max_bytes))

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, warn: Callable[[str], None] | None = None
    ) -> SchedulerConfig:
        """Build from a launch-config table. Unknown keys are an error naming the known
        ones; paglets 2.0's retired keys only warn."""
        warn = warn or _log.warning
        known = {f.name for f in dataclasses.fields(cls)}
        kept: dict[str, Any] = {}
        for key, value in values.items():
            if key in known:
                kept[key] = value
            elif key in _REPLACED:
                warn(f"[services.compute-slots] {key} is ignored: {_REPLACED[key]}")
            elif key.startswith(_REPLACED_PREFIX[0]):
                warn(f"[services.compute-slots] {key} is ignored: {_REPLACED_PREFIX[1]}")
            else:
                raise ValueError(
                    f"[services.compute-slots] has no setting {key!r}; known settings: "
                    f"{', '.join(sorted(known))}"
                )
        return cls(**kept)
