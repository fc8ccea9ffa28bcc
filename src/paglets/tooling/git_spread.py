"""Spreading an update through the mesh (network.md section 5, "spreading").

A host running with `--auto-update-from-git` pushes the commit it runs (its gossiped
`git_head`) to every alive member that also advertises `auto_update_from_git` and whose own
`git_head` is an older commit of the same line: `POST /admin/git-update {target_hash, ...}`.

* Never an older commit: a peer is pushed to only when its HEAD is a strict ancestor of
  ours, which also needs its commit to be known here; diverged or newer peers are left
  alone (no downgrade, no ping-pong).
* At most `max_in_flight` (4) pushes at once, and each peer once per target per
  `peer_interval` (60 s): a peer that refused (dirty tree, rate limit) is asked again later,
  never flooded.

It works with an explicit `--mesh-version` too: the gossiped `git_head` is what counts.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from paglets.tooling.git_checkout import Checkout

__all__ = ["MAX_IN_FLIGHT", "PEER_INTERVAL", "Peer", "Spreader"]

log = logging.getLogger("paglets.git_update")

MAX_IN_FLIGHT = 4
PEER_INTERVAL = 60.0
TICK = 2.0
_ANCESTRY_CACHE = 1024


@dataclass(frozen=True, slots=True)
class Peer:
    """An alive member that advertises `auto_update_from_git`."""

    host_id: str
    name: str
    url: str
    git_head: str | None


class Spreader:
    """Chooses whom to push to (`due`) and pushes (`step`, or a thread with `start`)."""

    def __init__(
        self,
        checkout: Checkout,
        head: str,
        *,
        peers: Callable[[], list[Peer]],
        push: Callable[[Peer, str], None],
        max_in_flight: int = MAX_IN_FLIGHT,
        peer_interval: float = PEER_INTERVAL,
        tick: float = TICK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checkout = checkout
        self.head = head
        self.peers = peers
        self.push = push
        self.max_in_flight = max_in_flight
        self.peer_interval = peer_interval
        self.tick = tick
        self.clock = clock
        self._pushed: dict[tuple[str, str], float] = {}  # (peer id, target) → when
        self._in_flight: set[str] = set()
        self._older: dict[str, bool] = {}  # their head → strictly older than ours
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # -- choosing ---------------------------------------------------------------------------

    def _is_older(self, their: str) -> bool:
        known = self._older.get(their)
        if known is not None:
            return known
        if their == self.head or self.checkout.resolve(their) is None:
            return False  # unknown here (maybe newer, fetched elsewhere): ask again later
        older = self.checkout.is_ancestor(their, self.head)
        if len(self._older) >= _ANCESTRY_CACHE:
            self._older.clear()
        self._older[their] = older
        return older

    def due(self, now: float) -> list[Peer]:
        """Peers to push to now: older HEAD, not in flight, not pushed this target within
        `peer_interval`, within the free push slots."""
        with self._lock:
            free = self.max_in_flight - len(self._in_flight)
            busy = set(self._in_flight)
        if free <= 0:
            return []
        chosen: list[Peer] = []
        for peer in self.peers():
            if len(chosen) >= free:
                break
            if not peer.git_head or peer.git_head == self.head or peer.host_id in busy:
                continue
            last = self._pushed.get((peer.host_id, self.head))
            if last is not None and now - last < self.peer_interval:
                continue
            if not self._is_older(peer.git_head):
                continue
            chosen.append(peer)
        return chosen

    # -- pushing ----------------------------------------------------------------------------

    def step(self) -> list[Peer]:
        """Push to every due peer (on the push threads); returns them."""
        now = self.clock()
        chosen = self.due(now)
        for peer in chosen:
            self._pushed[(peer.host_id, self.head)] = now
            with self._lock:
                self._in_flight.add(peer.host_id)
            executor = self._executor
            if executor is None:
                self._push_one(peer)
            else:
                try:
                    executor.submit(self._push_one, peer)
                except RuntimeError:  # shut down meanwhile
                    with self._lock:
                        self._in_flight.discard(peer.host_id)
        return chosen

    def _push_one(self, peer: Peer) -> None:
        try:
            self.push(peer, self.head)
            log.info("pushed commit %s to %s (%s)", self.head[:12], peer.name, peer.url)
        except Exception as exc:  # the peer answers for itself; asked again after the interval
            log.info("push of commit %s to %s failed: %s", self.head[:12], peer.name, exc)
        finally:
            with self._lock:
                self._in_flight.discard(peer.host_id)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_in_flight, thread_name_prefix="paglets-git-push"
        )
        self._thread = threading.Thread(target=self._loop, name="paglets-git-spread", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.step()
            except Exception as exc:  # a membership read failed (the host stops): next tick
                log.debug("git spread tick failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
