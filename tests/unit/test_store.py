"""The host's SQLite store: rows, batching, transactions, queues, events, scale."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from paglets.persistence import store as store_module
from paglets.persistence.store import AgentRow, EventRow, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "db" / "paglets.db")
    yield s
    s.close()


def row(agent_id: str, **kw: object) -> AgentRow:
    fields: dict[str, object] = {
        "agent_id": agent_id,
        "class_name": "pkg.mod:Agent",
        "state_class_name": "pkg.mod:State",
        "state": b"\x81\xa1n\x01",
    }
    fields.update(kw)
    return AgentRow(**fields)  # type: ignore[arg-type]


# -- agents ------------------------------------------------------------------------------


def test_put_get_round_trip_all_fields(store: Store) -> None:
    original = row(
        "a1",
        state_version=3,
        status="inactive",
        epoch=7,
        home_url="http://h:1",
        created_at=1.5,
        checkpointed_at=2.5,
        deactivated_at=3.5,
        activate_at=4.5,
        activate_on_startup=True,
        policy={"activate_on_message": False, "activate_at": 4.5},
        request={"reason": "idle", "source": "self", "policy": None, "metadata": {}},
        meta={"files": ["a.txt"], "run_error": None},
    )
    store.put_agent(original)
    assert store.get_agent("a1") == original
    assert store.has_agent("a1")
    assert store.get_agent("missing") is None
    assert not store.has_agent("missing")


def test_put_is_an_upsert(store: Store) -> None:
    store.put_agent(row("a", epoch=1))
    store.put_agent(row("a", epoch=2, state=b"new", meta={"k": 1}))
    got = store.get_agent("a")
    assert got is not None and got.epoch == 2 and got.state == b"new" and got.meta == {"k": 1}
    assert store.count_agents() == 1


def test_status_validation(store: Store) -> None:
    with pytest.raises(ValueError, match="status"):
        store.put_agent(row("a", status="sleeping"))
    store.put_agent(row("a"))
    with pytest.raises(ValueError, match="status"):
        store.set_status("a", "gone")


def test_counts_follow_inserts_updates_and_deletes(store: Store) -> None:
    store.put_agents([row(f"a{i}", created_at=float(i)) for i in range(5)])
    store.put_agent(row("i1", status="inactive"))
    assert store.count_agents() == 6
    assert store.count_agents("active") == 5
    store.set_status("a0", "inactive")
    store.set_status("a1", "crashed")
    store.put_agent(row("a2", status="inactive"))  # upsert changing status
    assert store.count_agents("active") == 2
    assert store.count_agents("inactive") == 3
    assert store.count_agents("crashed") == 1
    assert store.delete_agent("a0") is True
    assert store.delete_agent("a0") is False
    assert store.count_agents("inactive") == 2
    assert store.count_agents() == 5
    assert store.count_agents("nonexistent") == 0


def test_update_states_batch_ignores_missing(store: Store) -> None:
    store.put_agents([row("a"), row("b")])
    store.update_states([("a", b"A", 10.0), ("missing", b"M", 11.0), ("b", b"B", 12.0)])
    a, b = store.get_agent("a"), store.get_agent("b")
    assert a is not None and a.state == b"A" and a.checkpointed_at == 10.0
    assert b is not None and b.state == b"B" and b.checkpointed_at == 12.0
    assert not store.has_agent("missing")


def test_list_agents_order_paging_and_state(store: Store) -> None:
    store.put_agents(
        [
            row("c", created_at=1.0, state=b"C"),
            row("b", created_at=1.0, state=b"B", status="inactive"),
            row("a", created_at=2.0, state=b"A"),
        ]
    )
    listed = store.list_agents()
    assert [r.agent_id for r in listed] == ["b", "c", "a"]
    assert all(r.state == b"" for r in listed)
    assert [r.state for r in store.list_agents(with_state=True)] == [b"B", b"C", b"A"]
    assert [r.agent_id for r in store.list_agents(offset=1, limit=1)] == ["c"]
    assert [r.agent_id for r in store.list_agents(status="active")] == ["c", "a"]
    assert [r.agent_id for r in store.list_agents(status="active", offset=1)] == ["a"]
    assert store.list_agents(limit=0) == []
    assert store.agent_ids("active") == ["c", "a"]
    assert store.agent_ids("inactive") == ["b"]
    with pytest.raises(ValueError):
        store.list_agents(offset=-1)


def test_startup_and_timed_activations(store: Store) -> None:
    store.put_agents(
        [
            row("s1", status="inactive", activate_on_startup=True, created_at=2.0),
            row("s0", status="inactive", activate_on_startup=True, created_at=1.0),
            row("live", status="active", activate_on_startup=True, activate_at=1.0),
            row("t2", status="inactive", activate_at=200.0),
            row("t1", status="inactive", activate_at=100.0),
            row("t3", status="inactive", activate_at=300.0),
        ]
    )
    assert store.startup_agent_ids() == ["s0", "s1"]
    assert store.due_activations(250.0) == [("t1", 100.0), ("t2", 200.0)]
    assert store.due_activations(1000.0, limit=1) == [("t1", 100.0)]
    assert store.due_activations(50.0) == []
    assert store.next_activation_at() == 100.0
    store.set_status("t1", "active")
    assert store.next_activation_at() == 200.0


def test_next_activation_none_when_no_timer(store: Store) -> None:
    assert store.next_activation_at() is None
    store.put_agent(row("a", status="inactive"))
    assert store.next_activation_at() is None


# -- transactions ------------------------------------------------------------------------


def test_transaction_commits_once_and_nests(store: Store) -> None:
    with store.transaction():
        store.put_agent(row("a"))
        with store.transaction():
            store.put_agent(row("b"))
            store.set_meta("k", "v")
        assert store.has_agent("b")
    assert store.count_agents() == 2
    assert store.get_meta("k") == "v"


def test_transaction_rolls_back_on_error(store: Store) -> None:
    store.put_agent(row("keep"))
    with pytest.raises(RuntimeError), store.transaction():
        store.put_agent(row("gone"))
        store.delete_agent("keep")
        with store.transaction():
            store.queue_message("keep", b"m", True, 1.0)
        raise RuntimeError("boom")
    assert store.has_agent("keep")
    assert not store.has_agent("gone")
    assert store.count_queued("keep") == 0
    assert store.count_agents() == 1
    # The store is usable afterwards.
    store.put_agent(row("after"))
    assert store.has_agent("after")


def test_transaction_excludes_other_threads(store: Store) -> None:
    inside = threading.Event()
    release = threading.Event()
    seen: list[bool] = []

    def holder() -> None:
        with store.transaction():
            store.put_agent(row("txn"))
            inside.set()
            release.wait(10)
            store.delete_agent("txn")

    def reader() -> None:
        seen.append(store.has_agent("txn"))

    t1 = threading.Thread(target=holder)
    t1.start()
    assert inside.wait(10)
    t2 = threading.Thread(target=reader)
    t2.start()
    release.set()
    t1.join(10)
    t2.join(10)
    # The reader waited for the transaction: it never saw the uncommitted row.
    assert seen == [False]


def test_many_threads_write_concurrently(store: Store) -> None:
    def work(n: int) -> None:
        for i in range(50):
            store.put_agent(row(f"t{n}-{i}"))
            store.queue_message(f"t{n}-{i}", b"x", False, 0.0)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count_agents() == 300


# -- queued messages ---------------------------------------------------------------------


def test_queue_order_delete_and_count(store: Store) -> None:
    seqs = [store.queue_message("a", f"m{i}".encode(), i % 2 == 0, float(i)) for i in range(5)]
    store.queue_message("b", b"other", False, 0.0)
    assert seqs == sorted(seqs)
    queued = store.queued_messages("a")
    assert [q.payload for q in queued] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert [q.oneway for q in queued] == [True, False, True, False, True]
    assert [q.seq for q in queued] == seqs
    store.delete_queued(seqs[:2])
    assert [q.payload for q in store.queued_messages("a")] == [b"m2", b"m3", b"m4"]
    assert store.count_queued("a") == 3
    assert store.count_queued("b") == 1


def test_queue_seq_never_reused(store: Store) -> None:
    first = store.queue_message("a", b"1", False, 0.0)
    store.delete_queued([first])
    assert store.queue_message("a", b"2", False, 0.0) > first


def test_delete_agent_drops_its_queue(store: Store) -> None:
    store.put_agent(row("a"))
    store.queue_message("a", b"x", True, 0.0)
    store.queue_message("b", b"y", True, 0.0)
    assert store.delete_agent("a")
    assert store.count_queued("a") == 0
    assert store.count_queued("b") == 1


# -- meta and events ---------------------------------------------------------------------


def test_meta(store: Store) -> None:
    assert store.get_meta("host_id") is None
    store.set_meta("host_id", "abc")
    store.set_meta("host_id", "def")
    assert store.get_meta("host_id") == "def"
    with pytest.raises(TypeError):
        store.set_meta("n", 1)  # type: ignore[arg-type]


def events(ids: range, *, t0: float = 0.0) -> list[EventRow]:
    return [EventRow(i, "create" if i % 2 else "dispose", f"a{i % 3}", t0 + i, b"b") for i in ids]


def test_events_paging_and_filters(store: Store) -> None:
    assert store.max_event_id() == 0
    store.append_events(events(range(1, 11)))
    assert store.max_event_id() == 10
    page1 = store.events_since(0, 4)
    assert [e.event_id for e in page1] == [1, 2, 3, 4]
    page2 = store.events_since(page1[-1].event_id, 4)
    assert [e.event_id for e in page2] == [5, 6, 7, 8]
    assert [e.event_id for e in store.events_since(8, 100)] == [9, 10]
    assert store.events_since(10, 5) == []
    assert store.events_since(0, 0) == []
    assert [e.event_id for e in store.events_since(0, 100, kinds=["create"])] == [1, 3, 5, 7, 9]
    assert [e.event_id for e in store.events_since(2, 100, agent_id="a0")] == [3, 6, 9]


def test_prune_events_by_count_and_age(store: Store) -> None:
    store.append_events(events(range(1, 101)))  # timestamps 1..100
    assert store.prune_events(before=0.0, keep_max=1000) == 0
    assert store.prune_events(before=0.0, keep_max=30) == 70
    assert [e.event_id for e in store.events_since(0, 1000)] == list(range(71, 101))
    assert store.prune_events(before=91.0, keep_max=1000) == 20
    assert [e.event_id for e in store.events_since(0, 1000)] == list(range(91, 101))
    # Pruning everything keeps ids monotonic: the high-water mark survives.
    assert store.prune_events(before=1e9, keep_max=1000) == 10
    assert store.events_since(0, 10) == []
    assert store.max_event_id() == 100


def test_prune_with_sparse_ids(store: Store) -> None:
    store.append_events(events(range(1, 200, 10)))  # 20 events, ids 1, 11, ..., 191
    assert store.prune_events(before=0.0, keep_max=5) == 15
    assert [e.event_id for e in store.events_since(0, 100)] == [151, 161, 171, 181, 191]


# -- durability, schema, scale -----------------------------------------------------------


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "paglets.db"
    with Store(path, durability="full") as s:
        s.put_agent(row("a", status="inactive", activate_on_startup=True))
        s.queue_message("a", b"q", True, 1.0)
        s.set_meta("host_id", "h")
        s.append_events(events(range(1, 4)))
    with Store(path) as s:
        assert s.startup_agent_ids() == ["a"]
        assert [q.payload for q in s.queued_messages("a")] == [b"q"]
        assert s.get_meta("host_id") == "h"
        assert s.max_event_id() == 3
        assert s.count_agents("inactive") == 1


def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "paglets.db"
    Store(path, durability="full").close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(Exception, match="schema version 99"):
        Store(path)


def test_unknown_durability(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        Store(tmp_path / "x.db", durability="paranoid")


@pytest.mark.parametrize(
    ("sql", "params", "index"),
    [
        (store_module._STARTUP_IDS, (), "agents_startup"),
        (store_module._DUE_ACTIVATIONS, (10.0, 100), "agents_due"),
        (store_module._NEXT_ACTIVATION, (), "agents_due"),
        (store_module._AGENT_IDS, ("inactive",), "agents_by_status"),
        (store_module._LIST_AGENTS[(True, False)], ("active", 10, 0), "agents_by_status"),
        (store_module._LIST_AGENTS[(False, False)], (10, 0), "agents_by_created"),
        (store_module._QUEUED_MESSAGES, ("a",), "queued_by_agent"),
    ],
)
def test_startup_queries_use_indexes(store: Store, sql: str, params: tuple, index: str) -> None:
    store.put_agents([row(f"a{i}", status="inactive", activate_at=float(i)) for i in range(50)])
    conn = sqlite3.connect(store.path)
    try:
        plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort of the whole result


def test_100k_rows_reopen_reads_no_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "paglets.db"
    n = 100_000
    state = b"s" * 100
    with Store(path) as s:
        s.put_agents(
            row(
                f"agent-{i:06d}",
                status="inactive",
                state=state,
                created_at=float(i),
                activate_on_startup=(i % 10_000 == 0),
                activate_at=float(i) if i % 25_000 == 0 else None,
            )
            for i in range(n)
        )

    # Count SQLite VM steps (in units of 10) and record statements while the store opens:
    # reading 100,000 rows takes over a million steps; opening must take a few hundred.
    steps = [0]
    statements: list[str] = []
    real_connect = sqlite3.connect

    def spying_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)  # type: ignore[arg-type]

        def tick() -> int:
            steps[0] += 1
            return 0

        conn.set_progress_handler(tick, 10)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", spying_connect)
    reopened = Store(path)
    monkeypatch.undo()
    try:
        assert steps[0] < 100, (steps[0], statements)
        assert not any("agents" in sql and "SELECT" in sql.upper() for sql in statements)

        # The start-up queries stay small too...
        steps[0] = 0
        assert reopened.count_agents("inactive") == n
        assert len(reopened.startup_agent_ids()) == 10
        assert reopened.due_activations(30_000.0) == [
            ("agent-000000", 0.0),
            ("agent-025000", 25000.0),
        ]
        assert reopened.next_activation_at() == 0.0
        assert reopened.get_agent("agent-099999") is not None
        assert steps[0] < 500, steps[0]
        # ...while the counter does see a scan: the measurement means something.
        steps[0] = 0
        assert reopened.count_agents() == n
        assert len(reopened.list_agents(status="active")) == 0
        reopened._conn.execute("SELECT count(*) FROM agents WHERE epoch = 1").fetchone()
        assert steps[0] > 10_000, steps[0]
    finally:
        reopened.close()
