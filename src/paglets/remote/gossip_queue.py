"""A transmit-limited queue: what membership gossip piggybacks, freshest first.

Each item is sent at most `limit` times (retransmit_mult x ⌈log10(N+1)⌉, network.md §3.4),
items sent fewer times go first, and among those the newest. A newer item under the same key
replaces the older one, so a member's stale news is never sent after its fresh news.

Items live in levels by how often they were sent, so taking a message's worth costs the
items taken, not the queue's length (a 1,000-host mesh forming holds ~1,000 items per host).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from paglets.remote.mesh_wire import SUSPECT, Update, encoded_size

__all__ = ["Broadcasts", "TransmitQueue"]

SMALLEST_ITEM = 48  # bytes: stop looking when less than this is left of a budget


class _Entry:
    __slots__ = ("item", "key", "level", "size")

    def __init__(self, key: Hashable, item: Any, size: int) -> None:
        self.key = key
        self.item = item
        self.size = size
        self.level = 0


class TransmitQueue:
    """Keyed items, each sent a bounded number of times, fewest-sent and newest first."""

    __slots__ = ("_entries", "_levels")

    def __init__(self) -> None:
        self._levels: list[dict[Hashable, _Entry]] = [{}]
        self._entries: dict[Hashable, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def put(self, key: Hashable, item: Any, size: int) -> None:
        """Queue `item` (encoded `size` bytes) to be sent afresh, replacing `key`'s old item."""
        self.drop(key)
        entry = _Entry(key, item, size)
        self._entries[key] = entry
        self._levels[0][key] = entry

    def drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            del self._levels[entry.level][key]

    def take(self, budget: int, limit: int, max_items: int = 1 << 30) -> tuple[list[Any], int]:
        """Items for one message and their bytes: at most `budget` bytes and `max_items`
        items, each counted as sent once more and dropped once sent `limit` times."""
        taken: list[_Entry] = []
        left = budget
        for level in self._levels:
            if left < SMALLEST_ITEM or len(taken) >= max_items:
                break
            for entry in reversed(level.values()):  # newest first
                if entry.size <= left:
                    taken.append(entry)
                    left -= entry.size
                    if left < SMALLEST_ITEM or len(taken) >= max_items:
                        break
        items = []
        used = budget - left
        levels = self._levels
        for entry in taken:
            items.append(entry.item)
            del levels[entry.level][entry.key]
            entry.level += 1
            if entry.level >= limit:
                del self._entries[entry.key]
                continue
            if entry.level == len(levels):
                levels.append({})
            levels[entry.level][entry.key] = entry
        return items, used

    def clear(self) -> None:
        self._levels = [{}]
        self._entries.clear()


class Broadcasts:
    """A node's membership news in two queues: `urgent` (suspicions, deaths, leaves,
    refutations), pushed every gossip_interval as well as piggybacked, and `news` (joins and
    record changes), piggybacked only. One entry per member, except suspicions: one per
    suspecting host, so each independent witness travels and is counted (Lifeguard)."""

    __slots__ = ("_suspects", "news", "urgent")

    def __init__(self) -> None:
        self.urgent = TransmitQueue()
        self.news = TransmitQueue()
        self._suspects: dict[str, set[Hashable]] = {}

    def __len__(self) -> int:
        return len(self.urgent) + len(self.news)

    def put(self, update: Update, *, urgent: bool) -> None:
        """Queue `update`, replacing older news about the same member."""
        host_id = update.host_id
        if update.type == SUSPECT:
            key: Hashable = (host_id, update.by)
            self._suspects.setdefault(host_id, set()).add(key)
            self.urgent.drop(host_id)
            self.news.drop(host_id)
        else:
            key = host_id
            for old in self._suspects.pop(host_id, ()):
                self.urgent.drop(old)
            (self.news if urgent else self.urgent).drop(host_id)
        (self.urgent if urgent else self.news).put(key, update, encoded_size(update))

    def take(self, budget: int, limit: int) -> tuple[list[Update], int]:
        """Updates for one ping or ack: urgent ones first."""
        updates: list[Update] = []
        used = 0
        if len(self.urgent):
            updates, used = self.urgent.take(budget, limit)
        if len(self.news) and budget - used >= SMALLEST_ITEM:
            more, extra = self.news.take(budget - used, limit)
            updates.extend(more)
            used += extra
        return updates, used
