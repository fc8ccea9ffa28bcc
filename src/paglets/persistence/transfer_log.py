"""The durable side of the move protocol: transfer records (source outbox and target
inbox), forwarding pointers, and the highest epoch seen per agent (network.md §2).

Every state change of a transfer is one SQLite transaction, so whatever a crash
interrupts, the record says what was decided.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from paglets.persistence.store import Store

__all__ = ["Pointer", "TransferLog", "TransferRecord"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id TEXT PRIMARY KEY NOT NULL,
    role TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    status TEXT NOT NULL,
    peer_url TEXT NOT NULL,
    header BLOB NOT NULL,
    reply BLOB,
    hooks_done INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    deadline REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transfers_open ON transfers(role, status);
-- A target's arrival state, apart from its record: status updates never rewrite the blob,
-- and listing open transfers never reads it. Dropped once the transfer is decided.
CREATE TABLE IF NOT EXISTS transfer_states (
    transfer_id TEXT PRIMARY KEY NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS forwards (
    agent_id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    host_name TEXT NOT NULL,
    host_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    home_url TEXT NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS epochs (
    agent_id TEXT PRIMARY KEY NOT NULL,
    max_epoch INTEGER NOT NULL
) WITHOUT ROWID;
"""

_COLUMNS = (
    "transfer_id, role, agent_id, kind, epoch, status, peer_url, header, reply, "
    "hooks_done, created_at, updated_at, deadline, attempts, next_attempt"
)
_DECIDED = ("COMMITTED", "ACKED", "ABORTED", "REJECTED")


@dataclass(slots=True)
class TransferRecord:
    transfer_id: str
    role: str  # "source" | "target"
    agent_id: str
    kind: str  # "dispatch" | "retract" | "clone"
    epoch: int
    status: str  # source: PREPARING|COMMITTED|ACKED|ABORTED; target: PREPARED|REJECTED|COMMITTED|ABORTED
    peer_url: str
    header: dict[str, Any]
    state: bytes | None
    reply: dict[str, Any] | None
    hooks_done: bool
    created_at: float
    updated_at: float
    deadline: float
    attempts: int
    next_attempt: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "role": self.role,
            "agent_id": self.agent_id,
            "kind": self.kind,
            "epoch": self.epoch,
            "status": self.status,
            "peer_url": self.peer_url,
            "hooks_done": self.hooks_done,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "attempts": self.attempts,
        }


@dataclass(frozen=True, slots=True)
class Pointer:
    agent_id: str
    url: str
    host_name: str
    host_id: str
    epoch: int
    home_url: str
    at: float

    def moved(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "host_name": self.host_name,
            "host_url": self.url,
            "host_id": self.host_id,
            "epoch": self.epoch,
            "home_url": self.home_url,
        }


def _record(row: tuple[Any, ...], state: bytes | None = None) -> TransferRecord:
    return TransferRecord(
        transfer_id=row[0],
        role=row[1],
        agent_id=row[2],
        kind=row[3],
        epoch=row[4],
        status=row[5],
        peer_url=row[6],
        header=msgspec.msgpack.decode(row[7]),
        state=state,
        reply=None if row[8] is None else msgspec.msgpack.decode(row[8]),
        hooks_done=bool(row[9]),
        created_at=row[10],
        updated_at=row[11],
        deadline=row[12],
        attempts=row[13],
        next_attempt=row[14],
    )


class TransferLog:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.ensure_schema(_SCHEMA)

    # -- records -----------------------------------------------------------------------

    def insert(self, record: TransferRecord) -> None:
        with self.store.transaction():
            self.store.execute(
                f"INSERT INTO transfers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.transfer_id,
                    record.role,
                    record.agent_id,
                    record.kind,
                    record.epoch,
                    record.status,
                    record.peer_url,
                    msgspec.msgpack.encode(record.header),
                    None if record.reply is None else msgspec.msgpack.encode(record.reply),
                    int(record.hooks_done),
                    record.created_at,
                    record.updated_at,
                    record.deadline,
                    record.attempts,
                    record.next_attempt,
                ),
            )
            if record.state is not None:
                self._put_state(record.transfer_id, record.state)

    def _put_state(self, transfer_id: str, state: bytes) -> None:
        with self.store.transaction():
            value = self.store.state_column(self.state_owner(transfer_id), state)
            self.store.execute(
                "INSERT INTO transfer_states (transfer_id, state) VALUES (?, ?) "
                "ON CONFLICT(transfer_id) DO UPDATE SET state = excluded.state",
                (transfer_id, value),
            )

    @staticmethod
    def state_owner(transfer_id: str) -> str:
        """The arrival state's owner name in the store (`Store.put_agent(state_from=)`)."""
        return "transfer:" + transfer_id

    def get(
        self, transfer_id: str, role: str | None = None, *, with_state: bool = False
    ) -> TransferRecord | None:
        """The record; its arrival state is read only when asked for (it may be large)."""
        sql = f"SELECT {_COLUMNS} FROM transfers WHERE transfer_id = ?"
        params: tuple[Any, ...] = (transfer_id,)
        if role is not None:
            sql += " AND role = ?"
            params = (transfer_id, role)
        rows = self.store.query(sql, params)
        if not rows:
            return None
        state = None
        if with_state:
            found = self.store.query(
                "SELECT state FROM transfer_states WHERE transfer_id = ?", (transfer_id,)
            )
            state = self.store.load_state(found[0][0]) if found else None
        return _record(rows[0], state)

    def set_status(
        self,
        transfer_id: str,
        status: str,
        *,
        reply: dict[str, Any] | None = None,
        state: bytes | None = None,
        hooks_done: bool | None = None,
    ) -> None:
        """One transaction; a decided transfer drops its arrival state (the agent row or
        nothing holds it from then on)."""
        sets = ["status = ?", "updated_at = ?"]
        params: list[Any] = [status, time.time()]
        if reply is not None:
            sets.append("reply = ?")
            params.append(msgspec.msgpack.encode(reply))
        if hooks_done is not None:
            sets.append("hooks_done = ?")
            params.append(int(hooks_done))
        params.append(transfer_id)
        with self.store.transaction():
            self.store.execute(
                f"UPDATE transfers SET {', '.join(sets)} WHERE transfer_id = ?", params
            )
            if state is not None:
                self._put_state(transfer_id, state)
            if status in _DECIDED:
                self.store.execute(
                    "DELETE FROM transfer_states WHERE transfer_id = ?", (transfer_id,)
                )
                self.store.drop_state(self.state_owner(transfer_id))

    def schedule(self, transfer_id: str, attempts: int, next_attempt: float) -> None:
        self.store.execute(
            "UPDATE transfers SET attempts = ?, next_attempt = ? WHERE transfer_id = ?",
            (attempts, next_attempt, transfer_id),
        )

    def open_records(self, role: str, statuses: tuple[str, ...]) -> list[TransferRecord]:
        marks = ", ".join("?" for _ in statuses)
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM transfers WHERE role = ? AND status IN ({marks}) ORDER BY created_at",
            (role, *statuses),
        )
        return [_record(r) for r in rows]

    def listing(
        self,
        *,
        role: str | None = None,
        status: str | None = None,
        agent_id: str | None = None,
        limit: int = 1000,
    ) -> list[TransferRecord]:
        where, params = [], []
        for column, value in (("role", role), ("status", status), ("agent_id", agent_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM transfers"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC LIMIT ?"
        return [_record(r) for r in self.store.query(sql, (*params, limit))]

    # -- epochs and pointers -----------------------------------------------------------

    def max_epoch(self, agent_id: str) -> int:
        rows = self.store.query("SELECT max_epoch FROM epochs WHERE agent_id = ?", (agent_id,))
        return rows[0][0] if rows else 0

    def note_epoch(self, agent_id: str, epoch: int) -> None:
        self.store.execute(
            "INSERT INTO epochs (agent_id, max_epoch) VALUES (?, ?) ON CONFLICT(agent_id) DO UPDATE "
            "SET max_epoch = MAX(max_epoch, excluded.max_epoch)",
            (agent_id, epoch),
        )

    def pointer(self, agent_id: str) -> Pointer | None:
        rows = self.store.query(
            "SELECT agent_id, url, host_name, host_id, epoch, home_url, at FROM forwards WHERE agent_id = ?",
            (agent_id,),
        )
        return Pointer(*rows[0]) if rows else None

    def set_pointer(self, pointer: Pointer) -> bool:
        """Record where an agent went; an older epoch never overrides a newer one."""
        changed = self.store.execute(
            "INSERT INTO forwards (agent_id, url, host_name, host_id, epoch, home_url, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(agent_id) DO UPDATE SET url = excluded.url, "
            "host_name = excluded.host_name, host_id = excluded.host_id, epoch = excluded.epoch, "
            "home_url = excluded.home_url, at = excluded.at WHERE excluded.epoch > forwards.epoch",
            (
                pointer.agent_id,
                pointer.url,
                pointer.host_name,
                pointer.host_id,
                pointer.epoch,
                pointer.home_url,
                pointer.at,
            ),
        )
        return changed > 0

    def drop_pointer(self, agent_id: str) -> None:
        self.store.execute("DELETE FROM forwards WHERE agent_id = ?", (agent_id,))

    def prune(self, *, decided_before: float, pointers_before: float) -> tuple[int, int]:
        """Forget decided transfers last touched before `decided_before` and forwarding
        pointers written before `pointers_before` (`--transfer-log-retention`,
        `--pointer-ttl`). Open records (a source's unacknowledged COMMITTED, a target's
        PREPARED) and the epoch high-water marks are never pruned. Returns (records,
        pointers) removed."""
        with self.store.transaction():
            records = self.store.execute(
                "DELETE FROM transfers WHERE updated_at < ? AND ("
                "(role = 'source' AND status IN ('ACKED', 'ABORTED')) OR "
                "(role = 'target' AND status IN ('COMMITTED', 'ABORTED', 'REJECTED')))",
                (decided_before,),
            )
            pointers = self.store.execute("DELETE FROM forwards WHERE at < ?", (pointers_before,))
        return records, pointers
