"""The user-info outbox: output waiting to reach its home host, with per-job caps.

The durable copy of every item is its event in the host's event log (the service records
the event first); this outbox is the in-memory index of the events not yet acknowledged
by their home, rebuilt from the log after a restart. So it holds only what is in transit,
and each job may have at most `max_items` items or `max_bytes` bytes in transit (10,000 and
16 MiB by default, jobs.md §6): an item over the cap is not queued, only counted, and the
counts travel with the next batch to that home.

Thread-safe: the service's handlers add, its forwarder thread takes batches and acks.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Drops", "Outbox", "OutboxItem"]

MAX_ITEMS_PER_JOB = 10_000
MAX_BYTES_PER_JOB = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One event to deliver: its id here, its kind and data, its job and size."""

    event_id: int
    kind: str
    data: dict[str, Any]
    job: str
    size: int


@dataclass(slots=True)
class Drops:
    """How much of one job's output was dropped on its way to one home."""

    count: int = 0
    bytes: int = 0
    group: str = ""


@dataclass(slots=True)
class _Home:
    items: deque[OutboxItem] = field(default_factory=deque)
    drops: dict[str, Drops] = field(default_factory=dict)


class Outbox:
    """Pending items per home (keyed by the home's id, else its URL), in event order."""

    def __init__(
        self, *, max_items: int = MAX_ITEMS_PER_JOB, max_bytes: int = MAX_BYTES_PER_JOB
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._homes: dict[str, _Home] = {}
        self._jobs: dict[str, list[int]] = {}  # job -> [items, bytes] in transit
        self._newest = 0  # the newest event id ever added or dropped

    # -- adding --------------------------------------------------------------------------

    def admit(self, home: str, job: str, size: int, group: str = "") -> bool:
        """Reserve room for one item of `job` (of `size` bytes) on its way to `home`;
        False, counted as dropped, when the job is at its cap. An admitted item must then
        be `add`ed (the caller records its event in between)."""
        with self._lock:
            used = self._jobs.get(job)
            if used is None:
                used = self._jobs[job] = [0, 0]
            if used[0] + 1 > self.max_items or used[1] + size > self.max_bytes:
                slot = self._slot(home)
                drops = slot.drops.get(job)
                if drops is None:
                    drops = slot.drops[job] = Drops(group=group)
                drops.count += 1
                drops.bytes += size
                if not used[0]:
                    del self._jobs[job]
                return False
            used[0] += 1
            used[1] += size
            return True

    def add(self, home: str, item: OutboxItem) -> None:
        """Queue an admitted item. Items must come in increasing event id order."""
        with self._lock:
            self._newest = max(self._newest, item.event_id)
            self._slot(home).items.append(item)

    def offer(self, home: str, item: OutboxItem, group: str = "") -> bool:
        """`admit` then `add` in one step (for items whose event already exists)."""
        if not self.admit(home, item.job, item.size, group):
            return False
        self.add(home, item)
        return True

    def _slot(self, home: str) -> _Home:
        slot = self._homes.get(home)
        if slot is None:
            slot = self._homes[home] = _Home()
        return slot

    def note_seen(self, event_id: int) -> None:
        """An event that needs no delivery: the low-water mark may pass it."""
        with self._lock:
            self._newest = max(self._newest, event_id)

    # -- delivering ------------------------------------------------------------------------

    def homes(self) -> list[str]:
        """Homes with items or drop counts to deliver."""
        with self._lock:
            return [k for k, h in self._homes.items() if h.items or h.drops]

    def batch(
        self, home: str, max_items: int = 256, max_bytes: int = 1 << 20
    ) -> tuple[list[OutboxItem], dict[str, Drops]]:
        """The oldest items for `home` (at least one if any, then up to the limits) and its
        drop counts so far. Nothing is removed until `ack`."""
        with self._lock:
            slot = self._homes.get(home)
            if slot is None:
                return [], {}
            out: list[OutboxItem] = []
            size = 0
            for item in slot.items:
                if out and (len(out) >= max_items or size + item.size > max_bytes):
                    break
                out.append(item)
                size += item.size
            drops = {k: Drops(v.count, v.bytes, v.group) for k, v in slot.drops.items()}
            return out, drops

    def ack(self, home: str, upto: int, drops: dict[str, Drops] | None = None) -> int:
        """`home` has every item up to event id `upto` (and the `drops` sent with them):
        remove them; returns how many items went."""
        removed = 0
        with self._lock:
            slot = self._homes.get(home)
            if slot is None:
                return 0
            while slot.items and slot.items[0].event_id <= upto:
                item = slot.items.popleft()
                used = self._jobs.get(item.job)
                if used is not None:
                    used[0] -= 1
                    used[1] -= item.size
                    if used[0] <= 0:
                        del self._jobs[item.job]
                removed += 1
            for job, sent in (drops or {}).items():
                have = slot.drops.get(job)
                if have is None:
                    continue
                have.count -= sent.count
                have.bytes -= sent.bytes
                if have.count <= 0:
                    del slot.drops[job]
            if not slot.items and not slot.drops:
                del self._homes[home]
        return removed

    # -- book-keeping ------------------------------------------------------------------------

    def low_water(self) -> int:
        """An event id below every pending item: a rebuild after a restart scans the log
        from here. With nothing pending, the newest id seen."""
        with self._lock:
            firsts = [h.items[0].event_id for h in self._homes.values() if h.items]
            return min(firsts) - 1 if firsts else self._newest

    def in_transit(self, job: str) -> tuple[int, int]:
        """(items, bytes) of `job` waiting for delivery."""
        with self._lock:
            used = self._jobs.get(job)
            return (used[0], used[1]) if used else (0, 0)

    def pending(self, home: str | None = None) -> int:
        with self._lock:
            if home is not None:
                slot = self._homes.get(home)
                return len(slot.items) if slot is not None else 0
            return sum(len(h.items) for h in self._homes.values())
