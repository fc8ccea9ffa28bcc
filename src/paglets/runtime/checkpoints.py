"""Checkpoints: live state written to the store so a crash loses at most one interval.

A turn marks its paglet dirty; a group commit writes every dirty state in one
transaction at most once per `checkpoint_interval` (architecture §6).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from paglets.runtime.mailbox import Cell
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.persistence.store import Store

log = logging.getLogger("paglets.checkpoints")

__all__ = ["Checkpoints"]


class Checkpoints:
    def __init__(self, store: Store, emit: object) -> None:
        self._store = store
        self._emit = emit
        self._lock = threading.Lock()
        self._dirty: set[Cell] = set()

    def mark(self, cell: Cell) -> None:
        if cell.info.checkpoint_mode == "never":
            return
        with self._lock:
            self._dirty.add(cell)

    def is_dirty(self, cell: Cell) -> bool:
        return cell in self._dirty

    def forget(self, cell: Cell) -> None:
        with self._lock:
            self._dirty.discard(cell)

    def write_now(self, cell: Cell) -> None:
        """Store this paglet's state before returning (CHECKPOINT="always", `checkpoint()`)."""
        self.forget(cell)
        self._write([cell])

    def flush(self) -> int:
        """Write every dirty state in one transaction; returns how many were written."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        if dirty:
            self._write([cell for cell in dirty if not cell.gone])
        return len(dirty)

    def flush_all(self, cells: list[Cell] | None = None) -> None:
        """Write the given (or every dirty) paglet's state now, used at stop and shutdown."""
        if cells is None:
            self.flush()
            return
        with self._lock:
            self._dirty.difference_update(cells)
        self._write([cell for cell in cells if not cell.gone])

    def _write(self, cells: list[Cell]) -> None:
        now = time.time()
        items: list[tuple[str, bytes, float]] = []
        written: list[Cell] = []
        for cell in cells:
            paglet = cell.paglet
            try:
                with paglet.locked():
                    data = codec.encode_state(paglet.state)
            except Exception as exc:
                log.warning("checkpoint of paglet %s failed: %s", cell.agent_id, exc)
                self._emit(
                    "checkpoint-failed",
                    agent_id=cell.agent_id,
                    error=f"{type(exc).__name__}: {exc}",
                )  # type: ignore[operator]
                continue
            items.append((cell.agent_id, data, now))
            written.append(cell)
        if not items:
            return
        self._store.update_states(items)
        if self._store.pending_commit:  # durable before anyone is told it is
            self._store.commit()
        for cell in written:
            cell.info.checkpointed_at = now
