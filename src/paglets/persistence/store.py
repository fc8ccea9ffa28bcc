"""The host's SQLite store (`paglets.db`): paglet rows, queued messages, metadata, events.

Runtime-internal. One connection (WAL, `synchronous=NORMAL`, or `FULL` for
`durability="full"`) shared by every thread behind one re-entrant lock, so every method is
thread-safe and a `transaction()` opened by one thread excludes the others until it ends.

Scale: a host may hold a million inactive paglets, so opening the store only runs pragmas
and reads `user_version`; every query the runtime makes at start (`startup_agent_ids`,
`due_activations`, `next_activation_at`, `agent_ids`, `count_agents`) is answered from an
index or a trigger-maintained counter, never by scanning `agents`. The state blob is the
last column of its row so that listing without state never walks its overflow pages.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from paglets.core.errors import HostError
from paglets.persistence.state_files import SPILL_AT, StateFiles

__all__ = ["AGENT_STATUSES", "SCHEMA_VERSION", "AgentRow", "EventRow", "QueuedRow", "Store"]

SCHEMA_VERSION = 1
AGENT_STATUSES = frozenset({"active", "inactive", "crashed"})
_DURABILITY = {"normal": "NORMAL", "full": "FULL"}
_EVENT_HIGH_WATER_KEY = "events.high_water"


class AgentRow(msgspec.Struct, kw_only=True):
    """One paglet as stored: identity, classes, msgpack state, status and wake-up data."""

    agent_id: str
    class_name: str
    state_class_name: str
    state: bytes
    state_version: int = 1
    status: str = "active"  # "active" (live, or live at a crash) | "inactive" | "crashed"
    epoch: int = 0
    home_url: str = ""
    created_at: float = 0.0
    checkpointed_at: float = 0.0
    deactivated_at: float | None = None
    activate_at: float | None = None
    activate_on_startup: bool = False
    policy: dict | None = None  # DeactivationPolicy wire
    request: dict | None = None  # DeactivationRequest wire
    meta: dict = {}  # free-form (registered files, run_error, clone_of, ...)


class QueuedRow(msgspec.Struct):
    """A message queued for an inactive paglet; `seq` orders a paglet's queue."""

    seq: int
    agent_id: str
    payload: bytes
    oneway: bool
    queued_at: float


class EventRow(msgspec.Struct):
    """A context event as stored; `body` is the msgpack of the whole event wire dict."""

    event_id: int
    kind: str
    agent_id: str | None
    timestamp: float
    body: bytes


# ----------------------------------------------------------------------------------------
# Schema. Index and trigger choices are what keeps host start independent of row count.

_SCHEMA = f"""
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY NOT NULL,
    class_name TEXT NOT NULL,
    state_class_name TEXT NOT NULL,
    state_version INTEGER NOT NULL,
    status TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    home_url TEXT NOT NULL,
    created_at REAL NOT NULL,
    checkpointed_at REAL NOT NULL,
    deactivated_at REAL,
    activate_at REAL,
    activate_on_startup INTEGER NOT NULL,
    policy BLOB,
    request BLOB,
    meta BLOB,
    state BLOB NOT NULL
);
CREATE INDEX agents_by_status ON agents(status, created_at, agent_id);
CREATE INDEX agents_by_created ON agents(created_at, agent_id);
CREATE INDEX agents_due ON agents(activate_at)
    WHERE status = 'inactive' AND activate_at IS NOT NULL;
CREATE INDEX agents_startup ON agents(created_at, agent_id)
    WHERE status = 'inactive' AND activate_on_startup = 1;

-- Row counts per status, kept by triggers: health and gossip ask for them every second.
CREATE TABLE agent_counts (status TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER agents_count_insert AFTER INSERT ON agents BEGIN
    INSERT INTO agent_counts(status, n) VALUES (new.status, 1)
        ON CONFLICT(status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER agents_count_delete AFTER DELETE ON agents BEGIN
    UPDATE agent_counts SET n = n - 1 WHERE status = old.status;
END;
CREATE TRIGGER agents_count_update AFTER UPDATE OF status ON agents
    WHEN old.status IS NOT new.status BEGIN
    UPDATE agent_counts SET n = n - 1 WHERE status = old.status;
    INSERT INTO agent_counts(status, n) VALUES (new.status, 1)
        ON CONFLICT(status) DO UPDATE SET n = n + 1;
END;

-- AUTOINCREMENT: a seq is never reused, even after the newest rows were drained.
CREATE TABLE queued (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    oneway INTEGER NOT NULL,
    queued_at REAL NOT NULL
);
CREATE INDEX queued_by_agent ON queued(agent_id, seq);

CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;

CREATE TABLE events (
    event_id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    agent_id TEXT,
    timestamp REAL NOT NULL,
    body BLOB NOT NULL
);
PRAGMA user_version = {SCHEMA_VERSION};
"""

_AGENT_COLUMNS = (
    "agent_id, class_name, state_class_name, state_version, status, epoch, home_url, "
    "created_at, checkpointed_at, deactivated_at, activate_at, activate_on_startup, "
    "policy, request, meta"
)
_UPSERT_AGENT = (
    f"INSERT INTO agents ({_AGENT_COLUMNS}, state) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(agent_id) DO UPDATE SET class_name = excluded.class_name, "
    "state_class_name = excluded.state_class_name, state_version = excluded.state_version, "
    "status = excluded.status, epoch = excluded.epoch, home_url = excluded.home_url, "
    "created_at = excluded.created_at, checkpointed_at = excluded.checkpointed_at, "
    "deactivated_at = excluded.deactivated_at, activate_at = excluded.activate_at, "
    "activate_on_startup = excluded.activate_on_startup, policy = excluded.policy, "
    "request = excluded.request, meta = excluded.meta, state = excluded.state"
)
_SELECT_AGENT = f"SELECT {_AGENT_COLUMNS}, state FROM agents WHERE agent_id = ?"
_HAS_AGENT = "SELECT 1 FROM agents WHERE agent_id = ?"
_UPDATE_STATE = "UPDATE agents SET state = ?, checkpointed_at = ? WHERE agent_id = ?"
_SET_STATUS = "UPDATE agents SET status = ? WHERE agent_id = ?"
_DELETE_AGENT = "DELETE FROM agents WHERE agent_id = ?"
_LIST_AGENTS = {
    # (filtered by status, with state) -> SQL; X'' stands in for the state blob unread.
    (False, False): f"SELECT {_AGENT_COLUMNS}, X'' FROM agents "
    "ORDER BY created_at, agent_id LIMIT ? OFFSET ?",
    (False, True): f"SELECT {_AGENT_COLUMNS}, state FROM agents "
    "ORDER BY created_at, agent_id LIMIT ? OFFSET ?",
    (True, False): f"SELECT {_AGENT_COLUMNS}, X'' FROM agents WHERE status = ? "
    "ORDER BY created_at, agent_id LIMIT ? OFFSET ?",
    (True, True): f"SELECT {_AGENT_COLUMNS}, state FROM agents WHERE status = ? "
    "ORDER BY created_at, agent_id LIMIT ? OFFSET ?",
}
_COUNT_ALL = "SELECT coalesce(sum(n), 0) FROM agent_counts"
_COUNT_STATUS = "SELECT n FROM agent_counts WHERE status = ?"
_AGENT_IDS = "SELECT agent_id FROM agents WHERE status = ? ORDER BY created_at, agent_id"
# The literal status = 'inactive' terms match the partial indexes' WHERE clauses, and
# INDEXED BY pins them: without statistics the planner would pick agents_by_status and walk
# every inactive row (a million at scale) instead of the few that are due.
_STARTUP_IDS = (
    "SELECT agent_id FROM agents INDEXED BY agents_startup "
    "WHERE status = 'inactive' AND activate_on_startup = 1 "
    "ORDER BY created_at, agent_id"
)
_DUE_ACTIVATIONS = (
    "SELECT agent_id, activate_at FROM agents INDEXED BY agents_due "
    "WHERE status = 'inactive' AND activate_at IS NOT NULL AND activate_at <= ? "
    "ORDER BY activate_at LIMIT ?"
)
_NEXT_ACTIVATION = (
    "SELECT activate_at FROM agents INDEXED BY agents_due "
    "WHERE status = 'inactive' AND activate_at IS NOT NULL "
    "ORDER BY activate_at LIMIT 1"
)
_QUEUE_MESSAGE = "INSERT INTO queued (agent_id, payload, oneway, queued_at) VALUES (?, ?, ?, ?)"
_QUEUED_MESSAGES = (
    "SELECT seq, agent_id, payload, oneway, queued_at FROM queued WHERE agent_id = ? ORDER BY seq"
)
_DELETE_QUEUED = "DELETE FROM queued WHERE seq = ?"
_DELETE_QUEUED_FOR = "DELETE FROM queued WHERE agent_id = ?"
_COUNT_QUEUED = "SELECT count(*) FROM queued WHERE agent_id = ?"
_GET_META = "SELECT value FROM meta WHERE key = ?"
_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
_APPEND_EVENT = (
    "INSERT INTO events (event_id, kind, agent_id, timestamp, body) VALUES (?, ?, ?, ?, ?)"
)
_EVENTS_SINCE = (
    "SELECT event_id, kind, agent_id, timestamp, body FROM events WHERE event_id > ? "
    "ORDER BY event_id LIMIT ?"
)
_MAX_EVENT_ID = "SELECT max(event_id) FROM events"
_MIN_EVENT_ID = "SELECT min(event_id) FROM events"

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def _wire_dict(value: Any) -> bytes | None:
    if value is None:
        return None
    if type(value) is not dict:
        to_wire = getattr(value, "to_wire", None)
        value = to_wire() if callable(to_wire) else dict(value)
    return _encode(value)


def _check_status(status: str) -> None:
    if status not in AGENT_STATUSES:
        raise ValueError(f"agent status must be one of {sorted(AGENT_STATUSES)}, got {status!r}")


def _agent_params(row: AgentRow) -> tuple[Any, ...]:
    _check_status(row.status)
    meta = row.meta
    return (
        row.agent_id,
        row.class_name,
        row.state_class_name,
        row.state_version,
        row.status,
        row.epoch,
        row.home_url,
        row.created_at,
        row.checkpointed_at,
        row.deactivated_at,
        row.activate_at,
        1 if row.activate_on_startup else 0,
        _wire_dict(row.policy),
        _wire_dict(row.request),
        _encode(meta) if meta else None,
        row.state,
    )


def _agent_from(r: tuple[Any, ...], load_state: Callable[[bytes], bytes]) -> AgentRow:
    policy, request, meta = r[12], r[13], r[14]
    return AgentRow(
        agent_id=r[0],
        class_name=r[1],
        state_class_name=r[2],
        state_version=r[3],
        status=r[4],
        epoch=r[5],
        home_url=r[6],
        created_at=r[7],
        checkpointed_at=r[8],
        deactivated_at=r[9],
        activate_at=r[10],
        activate_on_startup=bool(r[11]),
        policy=None if policy is None else _decode(policy),
        request=None if request is None else _decode(request),
        meta={} if meta is None else _decode(meta),
        state=load_state(r[15]),
    )


class Store:
    """The host's durable store. Every method is thread-safe."""

    def __init__(self, path: Path, *, durability: str = "normal") -> None:
        synchronous = _DURABILITY.get(durability)
        if synchronous is None:
            raise ValueError(f"durability must be one of {sorted(_DURABILITY)}, got {durability!r}")
        self.path = Path(path)
        self.durability = durability
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; `transaction()` issues BEGIN itself.
        conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, cached_statements=512
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise HostError(
                    f"the store {str(self.path)!r} could not switch to WAL mode (got {mode!r}); "
                    "put the persistence dir on a local filesystem"
                )
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
            conn.execute("PRAGMA busy_timeout=10000")
            # Copying the WAL back into the database (a checkpoint) is left to a second
            # connection on a background thread (`checkpoint_wal`), off the commit path;
            # the writer only checkpoints itself when the WAL grows past 128 MiB.
            conn.execute("PRAGMA wal_autocheckpoint=32768")
            conn.execute("PRAGMA journal_size_limit=67108864")
            self._migrate(conn)
            self.state_files = StateFiles(
                self.path.parent / "state-files", conn, durable=durability == "full"
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._wal_conn: sqlite3.Connection | None = None
        self._wal_lock = threading.Lock()
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction(); > 0 means a BEGIN is open
        self._deferred = False  # a group-commit transaction is open
        self._pending: dict[str, tuple[Any, ...]] = {}  # deferred upserts not yet sent to SQLite
        # File work that waits for the open transaction's outcome (state_files.py).
        self._after_commit: list[Callable[[], None]] = []
        self._after_rollback: list[Callable[[], None]] = []
        self._closed = False

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise HostError(
                f"the store {str(self.path)!r} has schema version {version}, newer than this "
                f"paglets (schema {SCHEMA_VERSION}); upgrade paglets on this host or use "
                "another persistence dir"
            )
        if version == 0:
            conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")

    def checkpoint_wal(self) -> None:
        """Copy committed WAL pages into the database without blocking writers (PASSIVE),
        from a connection of its own. The host's timers call it about once a second."""
        with self._wal_lock:
            if self._closed:
                return
            if self._wal_conn is None:
                self._wal_conn = sqlite3.connect(
                    self.path, check_same_thread=False, isolation_level=None
                )
                self._wal_conn.execute("PRAGMA busy_timeout=1000")
            with contextlib.suppress(sqlite3.OperationalError):  # busy: next time
                self._wal_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._wal_lock:
            if self._wal_conn is not None:
                self._wal_conn.close()
                self._wal_conn = None
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sync_pending()
            if self._deferred:
                self._conn.execute("COMMIT")
                self._deferred = False
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one commit; nested uses join the outermost.

        Holds the store's lock throughout: other threads' calls wait until it ends. An
        exception leaving the outermost block rolls everything back.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            conn = self._conn
            self._sync_pending()
            if self._deferred:  # make the open batch durable first, whatever happens next
                conn.execute("COMMIT")
                self._deferred = False
            conn.execute("BEGIN")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._settle(self._after_rollback)
                raise
            self._depth = 0
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._settle(self._after_rollback)
                raise
            self._settle(self._after_commit)

    def _settle(self, actions: list[Callable[[], None]]) -> None:
        """Run the file work of the transaction that just ended (newest first) and forget
        the other outcome's."""
        todo = actions[::-1]
        self._after_commit = []
        self._after_rollback = []
        for action in todo:
            action()

    # -- large states (state_files.py) --------------------------------------------------

    def state_column(self, owner: str, state: bytes, *, link_from: str | None = None) -> bytes:
        """The value to store for `owner`'s state: the bytes, or a marker naming a file when
        large. Call inside `transaction()`; `link_from` names an owner whose file holds the
        same bytes (linked instead of written)."""
        return self.state_files.column_value(
            owner,
            state,
            self._after_commit.append,
            self._after_rollback.append,
            link_from=link_from,
        )

    def drop_state(self, owner: str) -> None:
        """`owner`'s state file goes when the open transaction commits."""
        self.state_files.drop(owner, self._after_commit.append, self._after_rollback.append)

    def load_state(self, value: bytes) -> bytes:
        return self.state_files.load(value)

    def _spilled(self, agent_id: str, state: bytes) -> bool:
        return len(state) >= SPILL_AT or self.state_files.has("agent:" + agent_id)

    def _agent_params_stored(self, row: AgentRow, link_from: str | None = None) -> tuple[Any, ...]:
        """`_agent_params` with the state column as stored; inside `transaction()`."""
        params = _agent_params(row)
        if not self._spilled(row.agent_id, row.state):
            return params
        value = self.state_column("agent:" + row.agent_id, row.state, link_from=link_from)
        return (*params[:-1], value)

    # -- agents --------------------------------------------------------------------------

    def put_agent(
        self, row: AgentRow, *, defer_commit: bool = False, state_from: str | None = None
    ) -> None:
        """Insert or replace the row for `row.agent_id`.

        With `defer_commit` the write joins a group-commit batch that becomes durable at the
        next `commit()` (the host's timer calls it every 100 ms) or at the next write that
        commits: one WAL commit for many creates instead of one each. `state_from` names a
        `state_column` owner already holding `row.state` (a large state is linked, not
        written again).
        """
        if defer_commit and not self._spilled(row.agent_id, row.state):
            params = _agent_params(row)
            with self._lock:
                self._pending[row.agent_id] = params
            return
        with self.transaction():
            self._conn.execute(_UPSERT_AGENT, self._agent_params_stored(row, state_from))

    def _sync_pending(self) -> None:
        """Send deferred upserts to SQLite (inside the open group-commit transaction), so
        every read and write after this sees them in order. Called with the lock held."""
        if not self._pending:
            return
        if not self._depth and not self._deferred:
            self._conn.execute("BEGIN")
            self._deferred = True
        self._conn.executemany(_UPSERT_AGENT, list(self._pending.values()))
        self._pending.clear()

    @property
    def pending_commit(self) -> bool:
        return self._deferred or bool(self._pending)

    def commit(self) -> None:
        """Make the open group-commit batch durable (no-op without one)."""
        with self._lock:
            if self._depth:
                return
            self._sync_pending()
            if self._deferred:
                self._conn.execute("COMMIT")
                self._deferred = False

    def put_agents(self, rows: Iterable[AgentRow]) -> None:
        """Insert or replace many rows in one transaction."""
        rows = list(rows)
        if not rows:
            return
        with self.transaction():
            params = [self._agent_params_stored(row) for row in rows]
            self._conn.executemany(_UPSERT_AGENT, params)

    def update_states(self, items: Iterable[tuple[str, bytes, float]]) -> None:
        """Batch checkpoint: `(agent_id, state, checkpointed_at)`; unknown ids are ignored."""
        items = list(items)
        if not items:
            return
        with self.transaction():
            params = [
                (
                    self.state_column("agent:" + agent_id, state)
                    if self._spilled(agent_id, state)
                    else state,
                    at,
                    agent_id,
                )
                for agent_id, state, at in items
            ]
            self._conn.executemany(_UPDATE_STATE, params)

    def set_status(self, agent_id: str, status: str) -> None:
        _check_status(status)
        with self.transaction():
            self._conn.execute(_SET_STATUS, (status, agent_id))

    def get_agent(self, agent_id: str) -> AgentRow | None:
        with self._lock:
            self._sync_pending()
            r = self._conn.execute(_SELECT_AGENT, (agent_id,)).fetchone()
            return None if r is None else _agent_from(r, self.state_files.load)

    def has_agent(self, agent_id: str) -> bool:
        with self._lock:
            self._sync_pending()
            return self._conn.execute(_HAS_AGENT, (agent_id,)).fetchone() is not None

    # -- extension tables (modules beside this one keep their own tables here) ----------

    def ensure_schema(self, script: str) -> None:
        """Run idempotent DDL (`CREATE TABLE IF NOT EXISTS ...`) for a module's own tables."""
        with self._lock:
            self._sync_pending()
            if self._deferred:
                self._conn.execute("COMMIT")
                self._deferred = False
            self._conn.executescript(script)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One write; joins the caller's `transaction()` or commits itself. Returns rowcount."""
        with self.transaction():
            return self._conn.execute(sql, params).rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            self._sync_pending()
            return self._conn.execute(sql, params).fetchall()

    def delete_agent(self, agent_id: str) -> bool:
        """Delete the row and its queued messages; True if the row existed."""
        with self.transaction():
            existed = self._conn.execute(_DELETE_AGENT, (agent_id,)).rowcount > 0
            self._conn.execute(_DELETE_QUEUED_FOR, (agent_id,))
            self.drop_state("agent:" + agent_id)
        return existed

    def list_agents(
        self,
        *,
        status: str | None = None,
        offset: int = 0,
        limit: int | None = None,
        with_state: bool = False,
    ) -> list[AgentRow]:
        """Rows ordered by (created_at, agent_id); without state, `state` is b"" (unread)."""
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}")
        sql = _LIST_AGENTS[(status is not None, bool(with_state))]
        page = -1 if limit is None else limit
        params: tuple[Any, ...] = (page, offset) if status is None else (status, page, offset)
        with self._lock:
            self._sync_pending()
            rows = self._conn.execute(sql, params).fetchall()
            return [_agent_from(r, self.state_files.load) for r in rows]

    def count_agents(self, status: str | None = None) -> int:
        with self._lock:
            self._sync_pending()
            if status is None:
                return self._conn.execute(_COUNT_ALL).fetchone()[0]
            r = self._conn.execute(_COUNT_STATUS, (status,)).fetchone()
        return 0 if r is None else r[0]

    def agent_ids(self, status: str) -> list[str]:
        with self._lock:
            self._sync_pending()
            rows = self._conn.execute(_AGENT_IDS, (status,)).fetchall()
        return [r[0] for r in rows]

    def startup_agent_ids(self) -> list[str]:
        """Inactive paglets whose policy says to wake at host start, oldest first."""
        with self._lock:
            self._sync_pending()
            rows = self._conn.execute(_STARTUP_IDS).fetchall()
        return [r[0] for r in rows]

    def due_activations(self, until: float, limit: int = 1000) -> list[tuple[str, float]]:
        """Inactive paglets whose timer is at or before `until`, soonest first."""
        with self._lock:
            self._sync_pending()
            rows = self._conn.execute(_DUE_ACTIVATIONS, (until, limit)).fetchall()
        return [(r[0], r[1]) for r in rows]

    def next_activation_at(self) -> float | None:
        with self._lock:
            self._sync_pending()
            r = self._conn.execute(_NEXT_ACTIVATION).fetchone()
        return None if r is None else r[0]

    # -- queued messages -----------------------------------------------------------------

    def queue_message(self, agent_id: str, payload: bytes, oneway: bool, queued_at: float) -> int:
        """Append to the paglet's durable queue; returns the message's `seq`."""
        with self.transaction():
            cursor = self._conn.execute(
                _QUEUE_MESSAGE, (agent_id, payload, 1 if oneway else 0, queued_at)
            )
            seq = cursor.lastrowid
        assert seq is not None
        return seq

    def queued_messages(self, agent_id: str) -> list[QueuedRow]:
        with self._lock:
            rows = self._conn.execute(_QUEUED_MESSAGES, (agent_id,)).fetchall()
        return [QueuedRow(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]

    def delete_queued(self, seqs: Iterable[int]) -> None:
        params = [(seq,) for seq in seqs]
        if not params:
            return
        with self.transaction():
            self._conn.executemany(_DELETE_QUEUED, params)

    def count_queued(self, agent_id: str) -> int:
        with self._lock:
            return self._conn.execute(_COUNT_QUEUED, (agent_id,)).fetchone()[0]

    # -- host metadata -------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            r = self._conn.execute(_GET_META, (key,)).fetchone()
        return None if r is None else r[0]

    def set_meta(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"store meta value for {key!r} must be a str, got {value!r}")
        with self.transaction():
            self._conn.execute(_SET_META, (key, value))

    # -- events --------------------------------------------------------------------------

    def append_events(self, rows: Iterable[EventRow]) -> None:
        params = [(r.event_id, r.kind, r.agent_id, r.timestamp, r.body) for r in rows]
        if not params:
            return
        with self.transaction():
            self._conn.executemany(_APPEND_EVENT, params)

    def events_since(
        self,
        since: int,
        limit: int,
        *,
        kinds: Iterable[str] | None = None,
        agent_id: str | None = None,
    ) -> list[EventRow]:
        """Events with `event_id > since`, ascending, at most `limit`; optional filters."""
        if limit <= 0:
            return []
        sql = _EVENTS_SINCE
        params: list[Any] = [since]
        wanted = None if kinds is None else list(kinds)
        if wanted or agent_id is not None:
            where = ["event_id > ?"]
            if wanted:
                where.append(f"kind IN ({', '.join('?' * len(wanted))})")
                params.extend(wanted)
            if agent_id is not None:
                where.append("agent_id = ?")
                params.append(agent_id)
            sql = (
                "SELECT event_id, kind, agent_id, timestamp, body FROM events WHERE "
                f"{' AND '.join(where)} ORDER BY event_id LIMIT ?"
            )
        params.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [EventRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def max_event_id(self) -> int:
        """The highest event id ever stored, even if pruning has since deleted it."""
        with self._lock:
            newest = self._conn.execute(_MAX_EVENT_ID).fetchone()[0]
            high = self._conn.execute(_GET_META, (_EVENT_HIGH_WATER_KEY,)).fetchone()
        return max(newest or 0, int(high[0]) if high else 0)

    def prune_events(self, *, before: float, keep_max: int) -> int:
        """Delete events older than `before` and all but the newest `keep_max`; returns count.

        Age pruning walks in id order and stops at the first event at or after `before`, so
        it costs what it deletes (ids follow time; an event stamped out of order under a
        clock step is kept until the events before it go).
        """
        conn = self._conn
        with self.transaction():
            newest = conn.execute(_MAX_EVENT_ID).fetchone()[0]
            if newest is None:
                return 0
            deleted = 0
            if keep_max <= 0:
                deleted += conn.execute("DELETE FROM events").rowcount
            else:
                oldest = conn.execute(_MIN_EVENT_ID).fetchone()[0]
                # Ids are dense in practice: only when they could exceed keep_max, find the
                # exact cut (the keep_max-th newest).
                if newest - oldest >= keep_max:
                    r = conn.execute(
                        "SELECT event_id FROM events ORDER BY event_id DESC LIMIT 1 OFFSET ?",
                        (keep_max - 1,),
                    ).fetchone()
                    if r is not None:
                        deleted += conn.execute(
                            "DELETE FROM events WHERE event_id < ?", (r[0],)
                        ).rowcount
            first = conn.execute(
                "SELECT timestamp FROM events ORDER BY event_id LIMIT 1"
            ).fetchone()
            if first is not None and first[0] < before:
                keep = conn.execute(
                    "SELECT event_id FROM events WHERE timestamp >= ? ORDER BY event_id LIMIT 1",
                    (before,),
                ).fetchone()
                cut = newest + 1 if keep is None else keep[0]
                deleted += conn.execute("DELETE FROM events WHERE event_id < ?", (cut,)).rowcount
            if deleted:
                # Remember the newest id so ids stay monotonic even if all rows are gone.
                high = conn.execute(_GET_META, (_EVENT_HIGH_WATER_KEY,)).fetchone()
                if high is None or int(high[0]) < newest:
                    conn.execute(_SET_META, (_EVENT_HIGH_WATER_KEY, str(newest)))
        return deleted
