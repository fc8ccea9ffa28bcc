"""A host's git auto-update (network.md section 5): the updater, the spreader, and what a
finished run means for the host.

`Host(auto_update_from_git=True)` builds one `AutoUpdate` for the git checkout holding the
working directory (the one the host's default mesh version comes from). Every finished run
emits a `git-update` event; one that succeeded and moved HEAD away from the commit this
process started from calls `restart_hook` — `paglets host` sets it to a graceful restart
(drain, save, re-exec: `paglets.tooling.restart`). A `Host` used as a library has no hook:
the run is reported and the new code waits for the application to restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paglets.core.errors import HostError
from paglets.tooling.git_checkout import Checkout
from paglets.tooling.git_spread import Peer, Spreader
from paglets.tooling.git_update import DEFAULT_MIN_INTERVAL, GitUpdater, UpdateResult

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["CAPABILITY", "PUSH_TIMEOUT", "AutoUpdate", "health_fields"]

log = logging.getLogger("paglets.git_update")

CAPABILITY = "admin:git-update"
PUSH_TIMEOUT = 10.0


class AutoUpdate:
    """The updater and spreader of one host; `start`/`stop` follow the host's."""

    def __init__(
        self,
        host: Host,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        verify_signatures: bool = False,
        checkout: Checkout | None = None,
    ) -> None:
        if checkout is None:
            checkout = Checkout.find(Path.cwd())
        if checkout is None:
            raise HostError(
                f"auto-update from git needs a git checkout, and {Path.cwd()} is not inside "
                "one; start the host from the checkout to keep updated (cd <checkout>)"
            )
        self.host = host
        self.checkout = checkout
        self.updater = GitUpdater(
            checkout,
            min_interval=min_interval,
            verify_signatures=verify_signatures,
            on_finish=self._finished,
        )
        self.restart_hook: Callable[[UpdateResult], None] | None = None
        self.spreader: Spreader | None = None

    @property
    def start_head(self) -> str | None:
        """The commit this process runs (gossiped as `git_head`)."""
        return self.updater.start_head

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        head = self.start_head
        if head is None or self.host.mesh is None:
            return
        self.spreader = Spreader(self.checkout, head, peers=self._peers, push=self._push)
        self.spreader.start()

    def stop(self) -> None:
        if self.spreader is not None:
            self.spreader.stop()
        self.updater.close()

    # -- spreading ---------------------------------------------------------------------------

    def _peers(self) -> list[Peer]:
        host = self.host
        node = host.mesh
        if node is None or host.stopped or host.drain.active:
            return []

        def read() -> list[Peer]:
            return [
                Peer(m.host_id, m.name, m.url, m.record.git_head)
                for m in node.members()
                if m.record.auto_update_from_git and m.liveness == "alive"
            ]

        return list(host._on_loop(read))

    def _push(self, peer: Peer, head: str) -> None:
        host = self.host
        host.peer_client.post_json(
            peer.url.rstrip("/") + "/admin/git-update",
            {
                "target_hash": head,
                "source_name": host.name,
                "source_url": host.address,
                "source_host_id": host.host_id,
            },
            timeout=PUSH_TIMEOUT,
        )

    # -- results -----------------------------------------------------------------------------

    def _finished(self, result: UpdateResult) -> None:
        self.host.events.emit(
            "git-update",
            data=result.to_wire(),
            error=None if result.succeeded else result.message,
        )
        if not result.restart:
            return
        hook = self.restart_hook
        if hook is None:
            log.warning(
                "host %r: the checkout %s is now at %s; restart the host to run it",
                self.host.name,
                self.checkout.root,
                (result.head_after or "?")[:12],
            )
            return
        hook(result)


def health_fields(auto: AutoUpdate | None) -> dict[str, Any]:
    """`/health`'s `auto_update_*` and `git_*` fields, from cached values (no git run)."""
    if auto is None:
        return {"auto_update_from_git": False, "git_update": None}
    status = auto.updater.status()
    return {
        "auto_update_from_git": True,
        "auto_update_min_interval_s": status["min_interval_s"],
        "auto_update_verify_signatures": status["verify_signatures"],
        "git_checkout": status["checkout"],
        "git_branch": status["branch"],
        "git_upstream": status["upstream"],
        "git_head": status["start_head"],
        "git_checkout_head": status["head"],
        "git_update": status["update"],
    }
