"""Whom to probe next, and whom to ask for help: SWIM's shuffled round-robin.

Each host walks a shuffled list of the members it can probe, so every member is probed by
every host once per cycle (time-bounded completeness), and reshuffles at the end. A newcomer
is slotted in at a random place still ahead, so it is probed in the current cycle. Suspects
heard of through gossip can be put ahead of the cycle (`check_soon`). Random picks for
ping-req helpers and gossip fanout come from the same list: O(count), not O(N).
"""

from __future__ import annotations

import random
from collections.abc import Container

from paglets.remote.membership import Member, MemberTable
from paglets.remote.mesh_wire import ALIVE, PROTOCOL, SUSPECT

__all__ = ["ProbeRing", "probeable"]


def probeable(member: Member) -> bool:
    """Alive or suspect, and speaking our wire protocol (another code version still does)."""
    return member.liveness in (ALIVE, SUSPECT) and member.record.protocol == PROTOCOL


class ProbeRing:
    __slots__ = ("_checks", "_pos", "_ring", "rng", "table")

    def __init__(self, table: MemberTable, rng: random.Random) -> None:
        self.table = table
        self.rng = rng
        self._ring: list[str] = []
        self._pos = 0
        self._checks: list[str] = []  # suspects to probe before the round-robin goes on

    def next(self, busy: Container[str]) -> Member | None:
        """The next member to probe, skipping any in `busy` (already being probed)."""
        members = self.table.members
        while self._checks:
            member = members.get(self._checks.pop())
            if member is not None and member.liveness == SUSPECT and member.host_id not in busy:
                return member
        for _ in range(2):
            ring = self._ring
            while self._pos < len(ring):
                host_id = ring[self._pos]
                self._pos += 1
                member = members.get(host_id)
                if member is not None and probeable(member) and host_id not in busy:
                    return member
            self._reshuffle()
            if not self._ring:
                return None
        return None

    def add(self, host_id: str) -> None:
        ahead = len(self._ring) - self._pos
        self._ring.insert(self._pos + int(self.rng.random() * (ahead + 1)), host_id)

    def check_soon(self, host_id: str) -> None:
        self._checks.append(host_id)

    def pick(self, count: int, *, exclude: str = "", alive_only: bool = False) -> list[Member]:
        """Up to `count` distinct random probeable members other than `exclude`."""
        ring = self._ring
        if not ring:
            self._reshuffle()
            self._pos = len(self._ring)
            ring = self._ring
        members = self.table.members
        chosen: dict[str, Member] = {}
        for _ in range(4 * count):
            if len(chosen) >= count or not ring:
                break
            host_id = ring[int(self.rng.random() * len(ring))]
            if host_id == exclude or host_id in chosen:
                continue
            member = members.get(host_id)
            if member is None or not probeable(member):
                continue
            if alive_only and member.liveness != ALIVE:
                continue
            chosen[host_id] = member
        return list(chosen.values())

    def _reshuffle(self) -> None:
        self._ring = [m.host_id for m in self.table.members.values() if probeable(m)]
        self.rng.shuffle(self._ring)
        self._pos = 0
