"""Side data riding with membership: each host's load, spec and service digest (jobs.md 1.4,
network.md §3.4).

* `load` is pushed: at most every `load_interval` per host (changes in between are folded
  into the next), only when it changed, piggybacked newest first.
* `services` (the mesh-scope service digest) is pushed when it changes.
* `spec` is pulled: records carry `spec_version`; a host with an older copy asks the owner once.

Everything pushed shares one per-host byte budget (a token bucket) and a per-message cap, so a
host's inbound summary traffic stays bounded however many hosts are busy (≤ 10 KiB/s at 1,000
busy hosts, targets.md h4): with a budget, a busy mesh gets older loads, never N² traffic.
"""

from __future__ import annotations

from typing import Any

from paglets.remote.gossip_queue import TransmitQueue
from paglets.remote.membership import Member, StoredSummary
from paglets.remote.mesh_wire import Summary, encoded_size

__all__ = ["LOAD", "PUSHED", "SERVICES", "SPEC", "SummaryBook"]

LOAD, SPEC, SERVICES = "load", "spec", "services"
PUSHED = frozenset({LOAD, SERVICES})


class SummaryBook:
    """This host's own summaries and the queue of everyone's that it passes on."""

    def __init__(
        self,
        host_id: str,
        *,
        load_interval: float,
        budget_bps: int,
        per_message: int,
    ) -> None:
        self.host_id = host_id
        self.load_interval = load_interval
        self.budget_bps = budget_bps
        self.per_message = per_message
        self.own: dict[str, Summary] = {}
        self.queue = TransmitQueue()
        self.incarnation = 0
        self._counter = 0
        self._pending_load: dict[str, Any] | None = None
        self._last_load_at = float("-inf")
        self._tokens = float(per_message)
        self._tokens_at = 0.0

    # -- own summaries -----------------------------------------------------------------------

    def publish(self, kind: str, body: dict[str, Any], now: float) -> Summary | None:
        """Set this host's `kind` summary. Unchanged bodies are not re-sent; a load change
        within `load_interval` of the last one waits for `due()`. Returns the new summary."""
        current = self.own.get(kind)
        if kind == LOAD:
            if current is not None and current.body == body:
                self._pending_load = None
                return None
            if now - self._last_load_at < self.load_interval:
                self._pending_load = body
                return None
            self._last_load_at = now
            self._pending_load = None
        elif current is not None and current.body == body:
            return None
        return self._issue(kind, body)

    def due(self, now: float) -> Summary | None:
        """A load change held back by the rate limit, now that it may go out."""
        body = self._pending_load
        if body is None or now - self._last_load_at < self.load_interval:
            return None
        return self.publish(LOAD, body, now)

    def _issue(self, kind: str, body: dict[str, Any]) -> Summary:
        # Versions stay monotonic across restarts: incarnations are persisted and only rise.
        self._counter += 1
        summary = Summary(self.host_id, kind, (self.incarnation << 32) | self._counter, body)
        self.own[kind] = summary
        if kind in PUSHED:
            self.queue.put((self.host_id, kind), summary, encoded_size(summary))
        return summary

    def spec_version(self) -> int:
        spec = self.own.get(SPEC)
        return 0 if spec is None else spec.version

    def stamp(self) -> int:
        """The newest version among this host's pushed summaries (0: none), sent in every
        frame's `from` so a peer that missed a push can tell, and pull."""
        return max((s.version for k, s in self.own.items() if k in PUSHED), default=0)

    @staticmethod
    def held(member: Member) -> int:
        """The newest version held of `member`'s pushed summaries."""
        return max((s.version for k, s in member.summaries.items() if k in PUSHED), default=0)

    # -- others' summaries -------------------------------------------------------------------

    def receive(self, summary: Summary, member: Member, now: float, *, relay: bool = True) -> bool:
        """Keep `summary` if newer than what `member` had; pushed kinds are passed on."""
        stored = member.summaries.get(summary.kind)
        if stored is not None and stored.version >= summary.version:
            return False
        size = encoded_size(summary)
        member.summaries[summary.kind] = StoredSummary(summary.version, summary.body, size, now)
        if relay and summary.kind in PUSHED:
            self.queue.put((summary.host_id, summary.kind), summary, size)
        return True

    def forget(self, host_id: str) -> None:
        for kind in PUSHED:
            self.queue.drop((host_id, kind))

    # -- what goes out -----------------------------------------------------------------------

    def take(self, now: float, limit: int) -> tuple[list[Summary], int]:
        """Summaries for one ping or ack and their bytes, within the per-message cap and the
        host's budget."""
        if not len(self.queue):
            return [], 0
        tokens = min(
            float(2 * self.per_message), self._tokens + (now - self._tokens_at) * self.budget_bps
        )
        self._tokens_at = now
        budget = int(min(tokens, self.per_message))
        items, spent = self.queue.take(budget, limit) if budget > 0 else ([], 0)
        self._tokens = tokens - spent
        return items, spent

    def snapshot(self, members: list[Member]) -> list[Summary]:
        """Every summary this host holds (own ones included), for a join's sync reply."""
        out = list(self.own.values())
        for member in members:
            for kind, stored in member.summaries.items():
                out.append(Summary(member.host_id, kind, stored.version, stored.body))
        return out
