"""What drives a membership node and how it is tuned: its scheduler, its transport, its
configuration (network.md §3.5) and the events it reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from paglets.remote.mesh_wire import Frame

if TYPE_CHECKING:
    from paglets.remote.membership import Member

__all__ = ["MemberEvent", "MeshConfig", "Scheduler", "TimerHandle", "Transport"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """Time and timers. `asyncio.AbstractEventLoop` satisfies it as it is."""

    def time(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Any: ...


class Transport(Protocol):
    """Carries frames to a member's URL. Best effort: a lost frame is just not delivered.
    A transport that sees a refused connection may call `SwimNode.on_unreachable(url)`."""

    def send(self, frame: Frame, to: str) -> None: ...


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Timers and budgets; defaults are network.md §3.5's."""

    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_probes: int = 3
    suspicion_timeout: float | None = None  # None: max(2 s, 2 x log10(N+1) x probe_interval)
    suspicion_min: float = 1.0
    suspicion_witnesses: int = 3  # independent suspicions that bring the timeout to its minimum
    gossip_interval: float = 0.2
    gossip_fanout: int = 3
    retransmit_mult: int = 3
    max_piggyback: int = 16 * 1024
    anti_entropy_interval: float = 30.0  # x max(1, N/64)
    forget_dead: float = 1800.0
    forget_left: float = 300.0
    forget_incompatible: float = 600.0
    seed_retry_min: float = 1.0
    seed_retry_max: float = 30.0
    max_local_health: int = 8
    load_interval: float = 2.0
    summary_budget_bps: int = 5 * 1024
    summary_per_message: int = 2560
    pulls_per_round: int = 4
    sweep_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A change in this host's view: `kind` is member-joined|member-alive|member-suspect|
    member-dead|member-left|member-updated|member-forgotten; `previous` the old liveness."""

    kind: str
    member: Member
    previous: str | None
