"""`job_index`: one row per compute job or collector on this host (jobs.md §8).

`paglets jobs ps` must not decode every paglet's state, so each job (and collector) writes
its row here at each transition and checkpoint, drops it when it leaves the host, and
`list_jobs` reads only this table. The row is the shared `JobIndexRow`; whether the paglet
is active is read from the registry at query time (it changes without a checkpoint).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import msgspec

from .catalog import JobIndexRow, ListJobsReply, ListJobsRequest

__all__ = ["delete_row", "get_row", "list_rows", "put_row"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_index (
    agent_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    compute_status TEXT NOT NULL,
    group_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    agent_class TEXT NOT NULL,
    since REAL NOT NULL,
    row BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS job_index_group ON job_index(group_id);
"""

_ready: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_ready_lock = threading.Lock()
_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(JobIndexRow)


def _store(host: Any) -> Any:
    store = host.store
    with _ready_lock:
        if not _ready.get(store):
            store.ensure_schema(_SCHEMA)
            _ready[store] = True
    return store


def put_row(host: Any, row: JobIndexRow) -> None:
    """Insert or replace the row of `row.agent_id`."""
    _store(host).execute(
        "INSERT INTO job_index (agent_id, job_id, kind, compute_status, group_id, owner, "
        "agent_class, since, row) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(agent_id) DO UPDATE SET job_id = excluded.job_id, kind = excluded.kind, "
        "compute_status = excluded.compute_status, group_id = excluded.group_id, "
        "owner = excluded.owner, agent_class = excluded.agent_class, since = excluded.since, "
        "row = excluded.row",
        (
            row.agent_id,
            row.job_id,
            row.kind,
            row.compute_status,
            row.group_id,
            row.owner,
            row.agent_class,
            row.since,
            _enc.encode(row),
        ),
    )


def delete_row(host: Any, agent_id: str) -> None:
    _store(host).execute("DELETE FROM job_index WHERE agent_id = ?", (agent_id,))


def get_row(host: Any, agent_id: str) -> JobIndexRow | None:
    rows = _store(host).query("SELECT row FROM job_index WHERE agent_id = ?", (agent_id,))
    return _dec.decode(rows[0][0]) if rows else None


def _live(host: Any) -> set[str]:
    try:
        return set(host.registry.live)
    except Exception:
        return set()


def list_rows(host: Any, request: ListJobsRequest) -> ListJobsReply:
    """The rows matching every non-empty filter, oldest transition first, paged."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (
        ("compute_status", request.states),
        ("group_id", request.group_ids),
        ("owner", request.owners),
        ("agent_class", request.classes),
        ("kind", request.kinds),
    ):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params.extend(values)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    store = _store(host)
    total = int(store.query(f"SELECT COUNT(*) FROM job_index{where}", params)[0][0])
    rows = store.query(
        f"SELECT row FROM job_index{where} ORDER BY since, agent_id LIMIT ? OFFSET ?",
        [*params, max(0, request.limit), max(0, request.offset)],
    )
    live = _live(host)
    out = []
    for (blob,) in rows:
        row = _dec.decode(blob)
        out.append(msgspec.structs.replace(row, active=row.agent_id in live))
    return ListJobsReply(rows=tuple(out), total=total)
