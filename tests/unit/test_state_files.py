"""Large states live in files beside the database: written once, linked between owners,
deleted only after the commit that stops naming them, and swept after a crash."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from paglets.persistence.state_files import MARK, SPILL_AT
from paglets.persistence.store import AgentRow, Store
from paglets.persistence.transfer_log import TransferLog

BIG = bytes(range(256)) * (SPILL_AT // 256 + 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "paglets.db")
    yield s
    s.close()


def files(store: Store) -> list[str]:
    root = store.state_files.root
    return sorted(os.listdir(root)) if root.is_dir() else []


def raw_state(store: Store, agent_id: str) -> bytes:
    return store.query("SELECT state FROM agents WHERE agent_id = ?", (agent_id,))[0][0]


def row(agent_id: str, state: bytes) -> AgentRow:
    return AgentRow(agent_id=agent_id, class_name="m:A", state_class_name="m:S", state=state)


def test_a_large_state_is_a_file_and_a_small_one_is_inline(store: Store) -> None:
    store.put_agent(row("big", BIG))
    store.put_agent(row("small", b"\x80"))
    assert raw_state(store, "big").startswith(MARK)
    assert raw_state(store, "small") == b"\x80"
    assert len(files(store)) == 1
    got = store.get_agent("big")
    assert got is not None and got.state == BIG
    listed = {r.agent_id: r.state for r in store.list_agents(with_state=True)}
    assert listed == {"big": BIG, "small": b"\x80"}


def test_replacing_or_deleting_a_large_state_removes_its_file(store: Store) -> None:
    store.put_agent(row("a", BIG))
    first = files(store)
    store.update_states([("a", BIG[::-1], 1.0)])
    second = files(store)
    assert len(second) == 1 and second != first
    got = store.get_agent("a")
    assert got is not None and got.state == BIG[::-1]
    store.update_states([("a", b"\x80", 2.0)])  # shrinks back inline
    assert files(store) == []
    assert raw_state(store, "a") == b"\x80"
    store.put_agent(row("a", BIG))
    assert store.delete_agent("a")
    assert files(store) == []


def test_a_rolled_back_write_leaves_no_file_and_keeps_the_old_one(store: Store) -> None:
    store.put_agent(row("a", BIG))
    before = files(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.update_states([("a", BIG[::-1], 1.0)])
        raise RuntimeError("abort")
    assert files(store) == before
    got = store.get_agent("a")
    assert got is not None and got.state == BIG
    assert store.delete_agent("a")  # the rolled-back bookkeeping still knows the file
    assert files(store) == []


def test_an_arrival_state_becomes_the_agent_row_by_a_link(store: Store) -> None:
    log = TransferLog(store)
    tid = "ab" * 16
    with store.transaction():
        store.execute(
            "INSERT INTO transfer_states (transfer_id, state) VALUES (?, ?)",
            (tid, store.state_column(log.state_owner(tid), BIG)),
        )
    (arrival,) = files(store)
    inode = os.stat(store.state_files.root / arrival).st_ino
    with store.transaction():
        store.put_agent(row("moved", BIG), state_from=log.state_owner(tid))
        store.drop_state(log.state_owner(tid))
    (agent_file,) = files(store)
    assert os.stat(store.state_files.root / agent_file).st_ino == inode  # no copy was made
    got = store.get_agent("moved")
    assert got is not None and got.state == BIG


def test_files_no_row_names_are_swept_when_the_store_opens(tmp_path: Path) -> None:
    s = Store(tmp_path / "paglets.db")
    s.put_agent(row("kept", BIG))
    kept = files(s)
    stray = s.state_files.root / ("0" * 32)
    stray.write_bytes(b"left by a crash between a file and its commit")
    s.close()
    reopened = Store(tmp_path / "paglets.db")
    try:
        assert files(reopened) == kept
        got = reopened.get_agent("kept")
        assert got is not None and got.state == BIG
    finally:
        reopened.close()
