"""Suspicion timers (network.md §3.5, Lifeguard).

A suspect member is declared dead when its timer runs out: max(2 s, 2 x log10(N+1) x
probe_interval) at first, shrinking (logarithmically, as Lifeguard does) to `suspicion_min`
once `suspicion_witnesses` independent hosts suspect it, and stretched by this host's local
health. The timer starts at this host's own receive time, never at a remote one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from paglets.remote.membership import Member
from paglets.remote.mesh_wire import DEAD, SUSPECT, Update

if TYPE_CHECKING:
    from paglets.remote.swim import SwimNode

__all__ = ["Suspicions"]


class _Suspicion:
    __slots__ = ("incarnation", "started", "timer", "witnesses")

    def __init__(self, incarnation: int, started: float, by: str | None) -> None:
        self.incarnation = incarnation
        self.started = started
        self.witnesses: set[str] = {by} if by else set()
        self.timer: Any = None


class Suspicions:
    """The suspicion timers of one node; each lives on its `Member` while it is suspect."""

    __slots__ = ("node",)

    def __init__(self, node: SwimNode) -> None:
        self.node = node

    def bounds(self) -> tuple[float, float]:
        """(shortest, longest) suspicion timeout now, local health included."""
        node = self.node
        cfg = node.config
        if cfg.suspicion_timeout is not None:
            high = cfg.suspicion_timeout
        else:
            n = node.table.live_count + 1
            high = max(2.0, 2.0 * math.log10(n + 1) * cfg.probe_interval)
        low = min(cfg.suspicion_min, high)
        mult = node.health + 1
        return low * mult, high * mult

    def start(self, member: Member, by: str | None) -> None:
        self.drop(member)
        suspicion = _Suspicion(member.incarnation, self.node.clock.time(), by)
        member.suspicion = suspicion
        self._arm(member, suspicion)

    def confirm(self, member: Member, by: str | None) -> bool:
        """Another host suspects `member` too: True if that is a new witness."""
        suspicion = member.suspicion
        if suspicion is None or not by or by in suspicion.witnesses:
            return False
        suspicion.witnesses.add(by)
        self._arm(member, suspicion)
        return True

    @staticmethod
    def drop(member: Member) -> None:
        suspicion = member.suspicion
        if suspicion is not None:
            member.suspicion = None
            if suspicion.timer is not None:
                suspicion.timer.cancel()

    def _arm(self, member: Member, suspicion: _Suspicion) -> None:
        low, high = self.bounds()
        extra = max(0, len(suspicion.witnesses) - 1)
        needed = max(1, self.node.config.suspicion_witnesses - 1)
        timeout = max(low, high - (high - low) * math.log(extra + 1) / math.log(needed + 1))
        clock = self.node.clock
        delay = suspicion.started + timeout - clock.time()
        if suspicion.timer is not None:
            suspicion.timer.cancel()
        suspicion.timer = clock.call_later(max(0.0, delay), self._expired, member)

    def _expired(self, member: Member) -> None:
        node = self.node
        suspicion = member.suspicion
        if not node.running or suspicion is None:
            return
        member.suspicion = None
        if member.liveness == SUSPECT and member.incarnation == suspicion.incarnation:
            node._apply(Update(DEAD, member.host_id, member.incarnation, by=node.host_id))
