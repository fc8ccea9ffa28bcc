"""Resources a paglet holds on its host (files, sockets, pools) and how to let them go.

Every paglet has one registry (`self.resources`), so it must cost almost nothing until
used: no dict and no lock of its own. Cleanup runs in the paglet's turn before it leaves
or sleeps (after `on_dispatching`, `on_reverting`, `on_deactivating`, `on_disposing`);
a failing entry that is not `suppress`ed stays registered and aborts that operation with
`ResourceCleanupError`, so nothing is silently leaked across a move.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from paglets.core.errors import ResourceCleanupError

__all__ = ["ResourceRegistry"]

_log = logging.getLogger(__name__)

# One lock for all registries: it guards only dict edits (never a cleanup callback), and
# registries are touched rarely, so sharing it costs nothing and saves one lock per paglet.
_LOCK = threading.Lock()


class _Entry:
    __slots__ = ("cleanup", "suppress")

    def __init__(self, cleanup: Callable[[], Any], suppress: bool) -> None:
        self.cleanup = cleanup
        self.suppress = suppress


class ResourceRegistry:
    """Named cleanup callbacks, run newest first by `cleanup()`."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] | None = None

    def register(self, name: str, cleanup: Callable[[], Any], *, suppress: bool = False) -> None:
        """Register `cleanup()` under `name` (re-registering a name replaces it, as newest).

        With `suppress=True` a failure of this entry is logged and the entry dropped
        instead of aborting the operation.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a resource name must be a non-empty str, got {name!r}")
        if not callable(cleanup):
            raise TypeError(f"cleanup for resource {name!r} must be callable, got {cleanup!r}")
        entry = _Entry(cleanup, bool(suppress))
        with _LOCK:
            entries = self._entries
            if entries is None:
                entries = self._entries = {}
            entries.pop(name, None)
            entries[name] = entry

    def track_closeable(
        self, name: str, obj: Any, *, method: str = "close", suppress: bool = False
    ) -> Any:
        """Register `obj.<method>()` as the cleanup for `name`; returns `obj`."""
        closer = getattr(obj, method, None)
        if not callable(closer):
            raise TypeError(
                f"resource {name!r}: {type(obj).__name__} has no callable {method!r} method; "
                "pass method= with the name of its close method"
            )
        self.register(name, closer, suppress=suppress)
        return obj

    def remove(self, name: str) -> bool:
        """Forget `name` without running its cleanup; True if it was registered."""
        with _LOCK:
            entries = self._entries
            return entries is not None and entries.pop(name, None) is not None

    def clear(self) -> None:
        """Forget every entry without running any cleanup."""
        with _LOCK:
            self._entries = None

    def status(self) -> dict[str, bool]:
        """`{name: suppress}` in registration order."""
        with _LOCK:
            entries = self._entries
            return {} if not entries else {name: e.suppress for name, e in entries.items()}

    def __contains__(self, name: object) -> bool:
        entries = self._entries
        return entries is not None and name in entries

    def cleanup(self, *, reason: str) -> list[str]:
        """Run every cleanup, newest first; returns the names cleaned up.

        Each entry that succeeds, or fails with `suppress`, is removed. If entries without
        `suppress` failed, the rest are still tried, then `ResourceCleanupError` names the
        failed ones (they stay registered, so a retry can run them again).
        """
        with _LOCK:
            entries = self._entries
            snapshot = [] if not entries else list(entries.items())
        if not snapshot:
            return []
        done: list[str] = []
        failures: list[tuple[str, Exception]] = []
        for name, entry in reversed(snapshot):
            try:
                entry.cleanup()
            except Exception as exc:
                if not entry.suppress:
                    failures.append((name, exc))
                    continue
                _log.warning(
                    "cleanup of resource %r failed during %s (suppressed)",
                    name,
                    reason,
                    exc_info=exc,
                )
            else:
                done.append(name)
            with _LOCK:
                current = self._entries
                # Drop it unless the callback (or another thread) re-registered the name.
                if current is not None and current.get(name) is entry:
                    del current[name]
        if failures:
            detail = "; ".join(f"{name!r}: {type(exc).__name__}: {exc}" for name, exc in failures)
            error = ResourceCleanupError(
                f"resource cleanup during {reason} failed for {detail}; the failed resources "
                "stay registered: fix their cleanup, or remove() them, then retry"
            )
            error.resource_names = [name for name, _exc in failures]  # type: ignore[attr-defined]
            raise error from failures[0][1]
        return done

    def __repr__(self) -> str:
        return f"ResourceRegistry({list(self.status())!r})"
