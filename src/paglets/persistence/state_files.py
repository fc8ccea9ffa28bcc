"""Large states live in files beside the database, not in it (targets d2, d3).

A 64 MiB blob in SQLite is written twice (into the WAL, then copied into the database by the
checkpoint) and freeing it walks 16,000 overflow pages; a move stored such a state three
times on its way (the source's last checkpoint, the target's arrival record, the new agent
row). Here a state of `SPILL_AT` bytes or more is written once to `states/<name>`, and the
row holds a short marker naming the file. Handing a state from one owner to another (an
arrival record becoming the agent row) is a hard link: no byte is copied.

Consistency with the database: each owner (an agent row, an arrival record) has at most one
file, recorded in the `state_files` table inside the caller's transaction. A file is written
(and, with `durability="full"`, fsynced) before the row that names it commits; a replaced
or dropped file is unlinked only after the commit, and a new file is unlinked if the
transaction rolls back. A crash in between leaves only files no row names; they are deleted
when the store opens. Runtime-internal; `Store` is the only caller.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["MARK", "SPILL_AT", "StateFiles"]

SPILL_AT = 1 << 20
MARK = b"\x00\xffpaglets-state-file:"  # never the start of a msgpack or JSON state

SCHEMA = """
CREATE TABLE IF NOT EXISTS state_files (
    owner TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL
) WITHOUT ROWID;
"""


class StateFiles:
    """The `states/` directory and its table. Call every method with the store's lock held
    and, for writes, inside its transaction; `on_commit`/`on_rollback` register the file
    work that must wait for the transaction's outcome."""

    def __init__(self, root: Path, conn: sqlite3.Connection, *, durable: bool) -> None:
        self.root = root
        self._conn = conn
        self._durable = durable
        conn.executescript(SCHEMA)
        self._names: dict[str, str] = dict(conn.execute("SELECT owner, name FROM state_files"))
        self._sweep()

    def _sweep(self) -> None:
        """Delete files no row names (left by a crash between a file and its commit)."""
        if not self.root.is_dir():
            return
        known = set(self._names.values())
        for entry in os.scandir(self.root):
            if entry.name not in known:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def has(self, owner: str) -> bool:
        return owner in self._names

    def column_value(
        self,
        owner: str,
        data: bytes,
        on_commit: Callable[[Callable[[], None]], None],
        on_rollback: Callable[[Callable[[], None]], None],
        *,
        link_from: str | None = None,
    ) -> bytes:
        """What to store in the state column for `owner`: `data` itself when small, else a
        marker naming a file that holds it (a hard link of `link_from`'s file when that
        owner has one with the same content)."""
        if len(data) < SPILL_AT:
            if owner in self._names:
                self.drop(owner, on_commit, on_rollback)
            return data
        name = uuid.uuid4().hex
        path = self.root / name
        source = self._names.get(link_from) if link_from is not None else None
        if source is not None:
            os.link(self.root / source, path)
        else:
            self._write(path, data)
        on_rollback(lambda: _unlink(path))
        self._remember(owner, name, on_commit, on_rollback)
        return MARK + name.encode()

    def drop(
        self,
        owner: str,
        on_commit: Callable[[Callable[[], None]], None],
        on_rollback: Callable[[Callable[[], None]], None],
    ) -> None:
        """`owner` no longer has a file (its row was deleted or now holds a small state)."""
        old = self._names.pop(owner, None)
        if old is None:
            return
        self._conn.execute("DELETE FROM state_files WHERE owner = ?", (owner,))
        on_commit(lambda: _unlink(self.root / old))
        on_rollback(lambda: self._names.__setitem__(owner, old))

    def load(self, value: bytes) -> bytes:
        """The state a column value stands for."""
        if not value.startswith(MARK):
            return value
        name = value[len(MARK) :].decode()
        with open(self.root / name, "rb") as f:
            return f.read()

    def _remember(
        self,
        owner: str,
        name: str,
        on_commit: Callable[[Callable[[], None]], None],
        on_rollback: Callable[[Callable[[], None]], None],
    ) -> None:
        old = self._names.get(owner)
        self._names[owner] = name
        self._conn.execute(
            "INSERT INTO state_files (owner, name) VALUES (?, ?) "
            "ON CONFLICT(owner) DO UPDATE SET name = excluded.name",
            (owner, name),
        )
        if old is not None:
            on_commit(lambda: _unlink(self.root / old))
            on_rollback(lambda: self._names.__setitem__(owner, old))
        else:
            on_rollback(lambda: self._forget(owner))

    def _forget(self, owner: str) -> None:
        self._names.pop(owner, None)

    def _write(self, path: Path, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._durable:
                os.fsync(fd)
        finally:
            os.close(fd)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
