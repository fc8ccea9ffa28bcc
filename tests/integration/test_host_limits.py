"""Host limits and retention: --max-connections, --file-root, --artifact-owner-cleanup,
--pointer-ttl and --transfer-log-retention."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from paglets import Host
from paglets.core.errors import ForbiddenError, HostError
from paglets.examples.counter import Counter
from paglets.persistence.store import Store
from paglets.persistence.transfer_log import Pointer, TransferLog, TransferRecord


def _connect(host: Host) -> socket.socket:
    url = urlsplit(host.address)
    return socket.create_connection((url.hostname, url.port), timeout=10)


def _health(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_connections_past_the_limit_get_a_503_and_the_others_go_on(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha", max_connections=2)
    first, second = _connect(host), _connect(host)
    try:
        assert _health(first).startswith(b"HTTP/1.1 200")
        assert _health(second).startswith(b"HTTP/1.1 200")
        with _connect(host) as third:
            answer = third.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b"Retry-After: 1" in answer and b"too-many-connections" in answer
        assert _health(first).startswith(b"HTTP/1.1 200")  # served connections go on
    finally:
        first.close()
        second.close()
    deadline = time.monotonic() + 10
    while True:  # the closed ones free their places
        with _connect(host) as again:
            if _health(again).startswith(b"HTTP/1.1 200"):
                break
        assert time.monotonic() < deadline, "connections were not released"


def test_a_bad_limit_is_refused_with_the_fix() -> None:
    with pytest.raises(HostError, match="max_connections"):
        Host("alpha", max_connections=0)
    with pytest.raises(HostError, match="artifact_owner_cleanup"):
        Host("alpha", artifact_owner_cleanup="later")


def test_register_file_only_under_the_file_roots(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "ok.txt").write_text("ok")
    (other / "secret.txt").write_text("no")
    host = make_host("alpha", file_roots=[allowed])
    proxy = host.create(Counter)
    ref = host.register_file_for(proxy.agent_id, allowed / "ok.txt")
    assert ref.name == "ok.txt"
    with pytest.raises(ForbiddenError, match="--file-root"):
        host.register_file_for(proxy.agent_id, other / "secret.txt")
    with pytest.raises(ForbiddenError):  # no way out through ..
        host.register_file_for(proxy.agent_id, allowed / ".." / "other" / "secret.txt")
    own = host.work_dir_for(proxy.agent_id) / "out.txt"
    own.write_text("mine")  # the paglet's own dirs are always allowed
    assert host.register_file_for(proxy.agent_id, own).name == "out.txt"


def _owned_artifact(host: Host, tmp_path: Path) -> tuple[str, str]:
    proxy = host.create(Counter)
    source = tmp_path / "result.bin"
    source.write_bytes(b"r" * 100)
    ref = host.upload_artifact_for(proxy.agent_id, source)
    return proxy.agent_id, ref.artifact_id


@pytest.mark.parametrize(("policy", "expires"), [("delete", True), ("keep", False)])
def test_artifact_owner_cleanup(
    make_host: Callable[..., Host], tmp_path: Path, policy: str, expires: bool
) -> None:
    host = make_host("alpha", artifact_owner_cleanup=policy)
    agent_id, artifact_id = _owned_artifact(host, tmp_path)
    host.dispose(agent_id)
    stored = host.artifacts.get(artifact_id)
    assert (stored.expires_at > 0) is expires


def _record(tid: str, role: str, status: str, at: float) -> TransferRecord:
    return TransferRecord(
        transfer_id=tid,
        role=role,
        agent_id="agent-" + tid[:6],
        kind="dispatch",
        epoch=1,
        status=status,
        peer_url="http://127.0.0.1:1",
        header={},
        state=None,
        reply=None,
        hooks_done=True,
        created_at=at,
        updated_at=at,
        deadline=at,
        attempts=0,
        next_attempt=0.0,
    )


def test_prune_forgets_old_decided_records_and_pointers_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "paglets.db")
    try:
        log = TransferLog(store)
        old, new = 1000.0, time.time()
        cases = {
            ("source", "ACKED", old): False,
            ("source", "ABORTED", old): False,
            ("source", "COMMITTED", old): True,  # the COMMIT is still to be acknowledged
            ("source", "PREPARING", old): True,
            ("target", "COMMITTED", old): False,
            ("target", "REJECTED", old): False,
            ("target", "PREPARED", old): True,  # still waiting for the decision
            ("source", "ACKED", new): True,
        }
        tids = {}
        for i, (role, status, at) in enumerate(cases):
            tid = f"{i:032x}"
            tids[(role, status, at)] = tid
            log.insert(_record(tid, role, status, at))
        log.set_pointer(Pointer("old-one", "http://b", "b", "hb", 1, "http://a", old))
        log.set_pointer(Pointer("new-one", "http://b", "b", "hb", 1, "http://a", new))
        removed = log.prune(decided_before=new - 10, pointers_before=new - 10)
        assert removed == (4, 1)
        for key, kept in cases.items():
            assert (log.get(tids[key]) is not None) is kept, key
        assert log.pointer("old-one") is None
        assert log.pointer("new-one") is not None
    finally:
        store.close()
