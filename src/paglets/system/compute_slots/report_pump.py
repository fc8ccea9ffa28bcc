"""When a waiting job report goes out again (jobs.md §4.3 step 4): one small thread per
host wakes jobs whose report is due, or early when membership sees their collector's host
alive again.

A job whose report was not acknowledged stays in memory (a few kilobytes) and registers
its next attempt here; the pump sends it a local one-way `collecting_report_retry`. After
a host restart the jobs register again from `run()`. Wake-ups for a collector that came
back are spread over up to 30 s (about 20 ms per waiting job), so a thousand jobs do not
hit it at once while a few report at once.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from paglets.core.messages import Message

__all__ = ["REPORT_RETRY_MESSAGE", "ReportPump", "report_pump"]

REPORT_RETRY_MESSAGE = "collecting_report_retry"
MEMBERSHIP_CHECK_SECONDS = 1.0
MAX_SPREAD_SECONDS = 30.0
SPREAD_PER_JOB = 0.02

_pumps: dict[int, ReportPump] = {}
_pumps_lock = threading.Lock()


def report_pump(host: Any) -> ReportPump:
    """The host's pump (started on first use; ends with the host)."""
    key = id(host)
    with _pumps_lock:
        pump = _pumps.get(key)
        if pump is None or pump.host is not host or pump.finished:
            pump = _pumps[key] = ReportPump(host)
        return pump


class ReportPump:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.finished = False
        self._due: dict[str, tuple[float, str]] = {}  # agent id -> (when, collector host id)
        self._cond = threading.Condition()
        self._alive: set[str] = set()
        self._thread: threading.Thread | None = None

    def due(self, agent_id: str, collector_host_id: str, at: float) -> None:
        """Wake `agent_id` at `at` (epoch seconds), or earlier when its collector's host
        (`collector_host_id`) is seen alive again."""
        with self._cond:
            self._due[agent_id] = (at, collector_host_id)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, daemon=True, name=f"report-pump-{self.host.name}"
                )
                self._thread.start()
            self._cond.notify()

    def forget(self, agent_id: str) -> None:
        with self._cond:
            self._due.pop(agent_id, None)

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def _loop(self) -> None:
        next_check = 0.0
        try:
            while not self.host.stopped:
                now = time.time()
                if now >= next_check:
                    self._membership(now)
                    next_check = now + MEMBERSHIP_CHECK_SECONDS
                fire: list[str] = []
                with self._cond:
                    for agent_id, (at, _) in list(self._due.items()):
                        if at <= now:
                            fire.append(agent_id)
                            del self._due[agent_id]
                    soonest = min((at for at, _ in self._due.values()), default=now + 60.0)
                for agent_id in fire:
                    self._wake(agent_id)
                with self._cond:
                    wait = min(soonest, next_check) - time.time()
                    if wait > 0:
                        self._cond.wait(min(wait, MEMBERSHIP_CHECK_SECONDS))
        finally:
            self.finished = True
            with _pumps_lock:  # do not keep a stopped host alive through this table
                if _pumps.get(id(self.host)) is self:
                    del _pumps[id(self.host)]

    def _membership(self, now: float) -> None:
        """Jobs waiting for a collector host that just became alive are due soon."""
        with self._cond:
            wanted = {host_id for _, host_id in self._due.values() if host_id}
        if not wanted:
            self._alive = set()
            return
        try:
            alive = {
                r.host_id for r in self.host.list_hosts(online_only=True) if r.host_id in wanted
            }
        except Exception:
            return
        back = alive - self._alive
        self._alive = alive
        if not back:
            return
        with self._cond:
            waiting = [a for a, (_, h) in self._due.items() if h in back]
            spread = min(MAX_SPREAD_SECONDS, SPREAD_PER_JOB * len(waiting))
            for agent_id in waiting:
                at, host_id = self._due[agent_id]
                self._due[agent_id] = (min(at, now + random.uniform(0.0, spread)), host_id)

    def _wake(self, agent_id: str) -> None:
        try:
            self.host.proxy(agent_id).send_oneway(Message(REPORT_RETRY_MESSAGE, {"now": True}))
        except Exception:
            pass  # gone (disposed, moved): nothing to report from here
