"""A host that drains (network.md sections 2.2 and 5, jobs.md 3.7, cli.md 1.3).

Draining is the first step of a graceful restart and what `paglets host drain` (`POST
/admin/drain`) asks for: the host stays up and serves everything it holds, but takes no new
paglets. Creates are answered `503 draining` with `Retry-After`, PREPAREs `REJECTED` with
code `draining` and a `retry_after_s`, and the membership record says `draining: true`, so
placement skips the host everywhere (it is "never a target", network.md 3.2).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from paglets.core.errors import TransferError

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["ADMIN_RETRY_AFTER", "RESTART_RETRY_AFTER", "Drain"]

log = logging.getLogger("paglets.host")

# Retry-After, in seconds: a restart is back within seconds, an operator's drain lasts.
RESTART_RETRY_AFTER = 10
ADMIN_RETRY_AFTER = 60


class Drain:
    """Whether this host drains, why (`admin` or `restart`) and since when."""

    __slots__ = ("_lock", "active", "host", "reason", "retry_after", "since")

    def __init__(self, host: Host) -> None:
        self.host = host
        self.active = False
        self.reason: str | None = None
        self.since: float | None = None
        self.retry_after = ADMIN_RETRY_AFTER
        self._lock = threading.Lock()

    def set(self, on: bool, *, reason: str = "admin", retry_after: int | None = None) -> bool:
        """Start (`on`) or end draining; gossip the change and emit `host-draining`.
        Returns whether anything changed. A restart's drain is never undone by an admin."""
        with self._lock:
            if on == self.active:
                if on and reason == "restart":
                    self.reason, self.retry_after = reason, RESTART_RETRY_AFTER
                return False
            if not on and self.reason == "restart":
                return False
            self.active = on
            self.reason = reason if on else None
            self.since = time.time() if on else None
            if retry_after is not None:
                self.retry_after = retry_after
            else:
                self.retry_after = RESTART_RETRY_AFTER if reason == "restart" else ADMIN_RETRY_AFTER
        self._gossip(on)
        self.host.events.emit("host-draining", data={"draining": on, "reason": reason})
        log.info("host %r %s (%s)", self.host.name, "drains" if on else "admits again", reason)
        return True

    def _gossip(self, on: bool) -> None:
        node = self.host.mesh
        if node is None:
            return
        try:
            self.host._on_loop(lambda: node.update_record(draining=on))
        except Exception as exc:  # the loop is stopping: the host leaves the mesh anyway
            log.debug("draining=%s not gossiped: %s", on, exc)

    # -- admission -----------------------------------------------------------------------

    def _sentence(self) -> str:
        why = "restarts" if self.reason == "restart" else "drains"
        return (
            f"host {self.host.name!r} {why} and takes no new paglets; retry in "
            f"{self.retry_after}s or use another host"
        )

    def check_create(self) -> None:
        """Raise `503 draining` + `Retry-After` for a create while draining."""
        if self.active:
            from paglets.runtime.http_wire import HttpRefusal  # aiohttp only when serving

            raise HttpRefusal(
                self._sentence(),
                code="draining",
                error_type="RemoteHostError",
                headers={"Retry-After": str(self.retry_after)},
                detail={"retry_after_s": self.retry_after, "reason": self.reason},
            )

    def arrival_refusal(self) -> TransferError | None:
        """The error a PREPARE is REJECTED with while draining (code `draining`)."""
        if not self.active:
            return None
        error = TransferError(self._sentence(), code="draining")
        error.detail = {"retry_after_s": self.retry_after}  # type: ignore[attr-defined]
        return error

    def health_fields(self) -> dict[str, Any]:
        return {
            "draining": self.active,
            "draining_reason": self.reason,
            "draining_since": self.since,
        }
