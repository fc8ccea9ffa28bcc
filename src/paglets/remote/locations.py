"""Where a client last found each paglet that moved (network.md §1.6, api.md §11).

A proxy keeps the URL it was made with; once the client has followed a forwarding pointer
for an agent, later calls through *any* proxy of that agent go straight to the newest
address. Agent ids are unique only per host when the application chooses them, so an entry
also remembers every URL on the chain it was learnt from and is used only by proxies whose
URL is one of them: a proxy of another paglet with the same id on an unrelated host is not
misrouted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from paglets.runtime.local_hosts import normalise_url

__all__ = ["Location", "Locations"]

_MAX_ENTRIES = 4096  # a small cache: the oldest entry is forgotten first


@dataclass(slots=True)
class Location:
    url: str
    epoch: int
    home_url: str | None
    chain: set[str] = field(default_factory=set)


class Locations:
    def __init__(self) -> None:
        self._entries: dict[str, Location] = {}
        self._lock = threading.Lock()

    def start(self, url: str, agent_id: str) -> tuple[str, int, str | None]:
        """Where a call for `agent_id` made through a proxy of `url` should go first: the
        newest known URL (with its epoch and home) when `url` is on that agent's chain."""
        entry = self._entries.get(agent_id)
        if entry is None:
            return url, 0, None
        if url != entry.url and normalise_url(url) not in entry.chain:
            return url, 0, None
        return entry.url, entry.epoch, entry.home_url

    def home_of(self, agent_id: str) -> str | None:
        entry = self._entries.get(agent_id)
        return entry.home_url if entry is not None else None

    def note(
        self,
        agent_id: str,
        previous: str,
        url: str,
        epoch: int,
        home_url: str | None = None,
    ) -> None:
        """The agent was found at (or pointed to) `url` with `epoch`, coming from `previous`.
        An older epoch never replaces a newer one."""
        with self._lock:
            entries = self._entries
            entry = entries.get(agent_id)
            if entry is None:
                if len(entries) >= _MAX_ENTRIES:
                    del entries[next(iter(entries))]
                entry = entries[agent_id] = Location(url, epoch, home_url)
            elif epoch < entry.epoch:
                entry.chain.add(normalise_url(previous))
                entry.chain.add(normalise_url(url))
                return
            else:
                entry.url = url
                entry.epoch = epoch
                if home_url:
                    entry.home_url = home_url
            entry.chain.add(normalise_url(previous))
            entry.chain.add(normalise_url(url))

    def forget(self, agent_id: str) -> None:
        with self._lock:
            self._entries.pop(agent_id, None)

    def __len__(self) -> int:
        return len(self._entries)
