"""`ArtifactStore` (network.md §4, jobs.md §5, api.md §18): atomic checked writes, quota
reservation under races, expiry, id prefixes, owner cleanup, resumable uploads."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import paglets.artifact_store as artifact_store_module
from paglets.artifacts import ArtifactRef, ArtifactStore, safe_file_name
from paglets.core.errors import (
    HostError,
    InvalidAgentIdError,
    SerializationError,
    StorageQuotaError,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ArtifactStore]:
    s = ArtifactStore(tmp_path / "artifacts", max_artifact_bytes=1 << 20, quota_bytes=4 << 20)
    yield s
    s.close()


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def spool_files(store: ArtifactStore) -> list[Path]:
    return files_under(store.root / "tmp") + files_under(store.root / "uploads")


# -- writing --------------------------------------------------------------------------------


def test_put_and_get_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"hello", name="greeting.txt", owner_agent_id="agent-1")
    assert isinstance(ref, ArtifactRef)
    assert len(ref.artifact_id) == 32 and int(ref.artifact_id, 16) >= 0
    assert (ref.size_bytes, ref.sha256, ref.name) == (5, sha(b"hello"), "greeting.txt")
    assert store.get(ref.artifact_id) == ref
    assert store.list() == [ref]
    assert store.usage()["used_bytes"] == 5
    assert spool_files(store) == []
    out = store.export_to_path(ref.artifact_id, tmp_path / "out.txt")
    assert out.read_bytes() == b"hello"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_nameless_artifact_gets_a_name_from_its_id(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"x")
    assert ref.name == f"artifact-{ref.artifact_id[:12]}"


def test_writer_streams_chunks_of_unknown_length(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 3000
    with store.open_writer(name="stream.bin") as writer:
        for i in range(0, len(data), 4096):
            writer.write(data[i : i + 4096])
        ref = writer.commit()
    assert (ref.size_bytes, ref.sha256) == (len(data), sha(data))
    assert store.usage()["reserved_bytes"] == 0


def test_sha_mismatch_keeps_nothing(store: ArtifactStore) -> None:
    with pytest.raises(SerializationError) as info:
        store.put_bytes(b"actual bytes", sha256=sha(b"other bytes"))
    assert info.value.code == "checksum-mismatch"
    assert store.list() == []
    assert spool_files(store) == []
    assert files_under(store.root / "blobs") == []
    assert store.usage()["reserved_bytes"] == 0
    assert store.usage()["used_bytes"] == 0


def test_short_and_long_bodies_keep_nothing(store: ArtifactStore) -> None:
    with store.open_writer(size_bytes=10) as writer:
        writer.write(b"12345")
        with pytest.raises(SerializationError, match="10 were declared"):
            writer.commit()
    with store.open_writer(size_bytes=3) as writer, pytest.raises(SerializationError):
        writer.write(b"12345")
    assert store.list() == [] and spool_files(store) == []
    assert store.usage()["reserved_bytes"] == 0


def test_abandoned_writer_leaves_nothing(store: ArtifactStore) -> None:
    with pytest.raises(RuntimeError), store.open_writer(size_bytes=6) as writer:
        writer.write(b"abc")
        raise RuntimeError("client went away")
    assert store.list() == [] and spool_files(store) == []
    assert store.usage()["reserved_bytes"] == 0


def test_part_file_is_invisible_until_commit(store: ArtifactStore) -> None:
    writer = store.open_writer(size_bytes=4, name="late")
    writer.write(b"ab")
    assert store.list() == []
    assert len(files_under(store.root / "tmp")) == 1
    store.cleanup_temporary()  # a live writer's .part is not swept
    writer.write(b"cd")
    ref = writer.commit()
    assert store.get(ref.artifact_id).size_bytes == 4
    assert spool_files(store) == []


def test_reopen_cleans_up_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = ArtifactStore(root)
    kept = store.put_bytes(b"survivor")
    writer = store.open_writer(size_bytes=100)
    writer.write(b"half")  # the process "dies" here: the .part stays behind
    store.close()
    orphan = root / "blobs" / "ab" / ("ab" + "0" * 62)  # a blob renamed in, never committed
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"orphan")
    reopened = ArtifactStore(root)
    try:
        assert reopened.list() == [kept]
        assert files_under(root / "tmp") == []
        assert not orphan.exists()
        assert reopened.usage()["used_bytes"] == len(b"survivor")
        assert reopened.usage()["reserved_bytes"] == 0
    finally:
        reopened.close()


def test_identical_content_is_stored_once(store: ArtifactStore) -> None:
    a = store.put_bytes(b"same", name="a")
    b = store.put_bytes(b"same", name="b")
    assert a.artifact_id != b.artifact_id
    assert len(files_under(store.root / "blobs")) == 1
    assert store.usage()["used_bytes"] == 4
    assert store.delete(a.artifact_id) is True
    assert len(files_under(store.root / "blobs")) == 1  # b still needs the bytes
    assert store.delete(b.artifact_id) is True
    assert files_under(store.root / "blobs") == []
    assert store.usage()["used_bytes"] == 0
    assert store.delete(b.artifact_id) is False


def test_put_file_copies_or_moves(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n1,2\n")
    copied = store.put_file(src)
    assert copied.name == "data.csv" and src.exists()
    moved = store.put_file(src, name="moved.csv", move=True)
    assert not src.exists()
    assert store.get(moved.artifact_id).sha256 == copied.sha256


# -- limits and the quota -------------------------------------------------------------------


def test_too_large_is_refused_before_and_while_writing(store: ArtifactStore) -> None:
    with pytest.raises(HostError) as info:
        store.open_writer(size_bytes=(1 << 20) + 1)
    assert info.value.code == "body-too-large"
    with store.open_writer() as writer:
        writer.write(b"\0" * (1 << 20))
        with pytest.raises(HostError) as info:
            writer.write(b"\0")
    assert info.value.code == "body-too-large"
    assert store.list() == [] and store.usage()["reserved_bytes"] == 0


def test_quota_is_reserved_before_writing(store: ArtifactStore) -> None:
    held = [store.open_writer(size_bytes=1 << 20) for _ in range(4)]  # the whole quota
    with pytest.raises(StorageQuotaError) as info:
        store.open_writer(size_bytes=1)
    assert info.value.code == "quota-exceeded"
    assert "--artifact-storage-quota" in str(info.value)
    held[0].abort()
    store.open_writer(size_bytes=1).abort()  # the released reservation is usable again
    for writer in held[1:]:
        writer.abort()
    assert store.usage()["reserved_bytes"] == 0


@pytest.mark.parametrize("declared", [True, False])
def test_racing_writers_never_overshoot_the_quota(tmp_path: Path, declared: bool) -> None:
    size, fits = 1000, 10
    store = ArtifactStore(tmp_path / "race", max_artifact_bytes=size, quota_bytes=size * fits)
    threads_n = 32
    barrier = threading.Barrier(threads_n)
    stored: list[ArtifactRef] = []
    refused: list[BaseException] = []
    lock = threading.Lock()

    def upload(i: int) -> None:
        data = i.to_bytes(4, "big") * (size // 4)  # distinct content: no sharing
        barrier.wait()
        try:
            with store.open_writer(size_bytes=size if declared else None) as writer:
                for j in range(0, size, 100):
                    writer.write(data[j : j + 100])
                ref = writer.commit()
            with lock:
                stored.append(ref)
        except StorageQuotaError as exc:
            with lock:
                refused.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert len(stored) + len(refused) == threads_n
        assert 1 <= len(stored) <= fits
        if declared:
            assert len(stored) == fits  # reservations are exact: the quota is filled
        usage = store.usage()
        assert usage["used_bytes"] == size * len(stored) <= size * fits
        assert usage["reserved_bytes"] == 0
        assert spool_files(store) == []
    finally:
        store.close()


# -- expiry and owners ----------------------------------------------------------------------


def test_expired_artifacts_vanish_and_are_swept(store: ArtifactStore) -> None:
    now = time.time()
    gone = store.put_bytes(b"old", expires_at=now - 1)
    later = store.put_bytes(b"later", expires_at=now + 3600)
    forever = store.put_bytes(b"forever")
    with pytest.raises(HostError) as info:
        store.get(gone.artifact_id)
    assert info.value.code == "artifact-not-found"
    assert {r.artifact_id for r in store.list()} == {later.artifact_id, forever.artifact_id}
    assert store.sweep_expired() == 1
    assert store.usage()["used_bytes"] == len(b"later") + len(b"forever")
    assert store.sweep_expired(now=now + 7200) == 1
    assert store.list() == [forever]
    assert len(files_under(store.root / "blobs")) == 1


def test_delete_owner_and_owner_expiry(store: ArtifactStore) -> None:
    a1 = store.put_bytes(b"shared", owner_agent_id="alice")
    store.put_bytes(b"alice only", owner_agent_id="alice")
    b1 = store.put_bytes(b"shared", owner_agent_id="bob")
    kept = store.put_bytes(b"kept", owner_agent_id="carol", keep_after_owner=True)
    dropped = store.put_bytes(b"dropped", owner_agent_id="carol")
    assert {r.artifact_id for r in store.list("alice")} >= {a1.artifact_id}
    assert store.delete_owner("alice") == 2
    assert store.list("alice") == []
    assert store.get(b1.artifact_id).sha256 == sha(b"shared")  # bob's copy keeps the bytes
    assert store.delete_owner("nobody") == 0
    with pytest.raises(InvalidAgentIdError):
        store.delete_owner("../etc")
    assert store.expire_owner("carol", grace_seconds=60) == 1
    assert store.get(dropped.artifact_id).expires_at > time.time()
    assert store.sweep_expired(now=time.time() + 120) == 1
    assert store.list("carol") == [kept]


def test_set_owner_hands_an_artifact_over(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"x", owner_agent_id="a")
    assert store.set_owner(ref.artifact_id[:10], "b").owner_agent_id == "b"
    assert store.list("a") == [] and len(store.list("b")) == 1


# -- ids and prefixes -----------------------------------------------------------------------


@pytest.fixture
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Artifact ids the test chooses, so that two share a prefix."""
    ids = [
        "abcdef0123456789" + "0" * 16,
        "abcdef0123456789" + "1" * 16,
        "12345678" + "f" * 24,
    ]
    queue = [uuid.UUID(hex=i) for i in ids]
    monkeypatch.setattr(artifact_store_module, "uuid", SimpleNamespace(uuid4=lambda: queue.pop(0)))
    return ids


def test_unique_prefixes_resolve(store: ArtifactStore, fixed_ids: list[str]) -> None:
    for i in range(3):
        store.put_bytes(bytes([i]))
    assert store.resolve("12345678") == fixed_ids[2]
    assert store.get("12345678FF").artifact_id == fixed_ids[2]  # case-insensitive
    assert store.get(fixed_ids[0][:17]).artifact_id == fixed_ids[0]
    with pytest.raises(HostError) as info:
        store.get("abcdef01")
    assert info.value.code == "ambiguous-id"
    assert info.value.detail == {"candidates": fixed_ids[:2]}  # type: ignore[attr-defined]
    assert fixed_ids[0][:12] in str(info.value)
    for bad in ("1234567", "zzzzzzzz", "../../etc/passwd", "1" * 33):
        with pytest.raises(HostError) as info:
            store.get(bad)
        assert info.value.code == "bad-artifact-id"
    with pytest.raises(HostError) as info:
        store.get("99999999")
    assert info.value.code == "artifact-not-found"
    assert store.delete("abcdef01" + "23456789" + "1") is True  # a unique, longer prefix
    assert store.resolve("abcdef01") == fixed_ids[0]


def test_bad_metadata_is_refused(store: ArtifactStore) -> None:
    for kwargs in (
        {"name": "a\nb"},
        {"name": "x" * 256},
        {"compression": "g zip"},
        {"expires_at": -1},
        {"expires_at": float("nan")},
        {"sha256": "abc"},
    ):
        with pytest.raises(SerializationError):
            store.put_bytes(b"x", **kwargs)
    with pytest.raises(InvalidAgentIdError):
        store.put_bytes(b"x", owner_agent_id="a/b")
    assert store.list() == []


def test_safe_file_name() -> None:
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("..") == "artifact"
    assert safe_file_name("a\\b\\c.txt") == "c.txt"
    assert safe_file_name("tab\there", "x") == "tab_here"
    assert safe_file_name("", "fallback") == "fallback"


def test_export_checks_the_stored_bytes(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"precious", name="sub/dir/p.bin")
    blob = store.root / "blobs" / ref.sha256[:2] / ref.sha256
    blob.write_bytes(b"rotten!!")  # same size, other content
    with pytest.raises(SerializationError) as info:
        store.export_to_path(ref.artifact_id, tmp_path)
    assert info.value.code == "checksum-mismatch"
    assert list(tmp_path.glob("*p.bin*")) == []
    blob.write_bytes(b"precious")
    out = store.export_to_path(ref.artifact_id, tmp_path, move=True)
    assert out == tmp_path / "p.bin" and out.read_bytes() == b"precious"
    assert store.list() == []


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "a")
    store.close()
    with pytest.raises(HostError, match="closed"):
        store.put_bytes(b"x")


# -- resumable uploads ----------------------------------------------------------------------


def test_resumable_upload_in_parts(store: ArtifactStore) -> None:
    data = b"0123456789" * 1000
    status = store.uploads.create(size_bytes=len(data), sha256=sha(data), name="big.bin")
    assert status.offset == 0
    assert store.usage()["reserved_bytes"] == len(data)
    uid = status.upload_id
    with store.uploads.append(uid, 0) as appender:
        appender.write(data[:3000])
    assert store.uploads.status(uid).offset == 3000
    with pytest.raises(HostError) as info:
        store.uploads.append(uid, 0)
    assert info.value.code == "upload-offset"
    assert info.value.detail["offset"] == 3000  # type: ignore[attr-defined]
    with pytest.raises(HostError) as info:
        store.uploads.complete(uid)  # short: kept, resume it
    assert info.value.code == "upload-offset"
    with store.uploads.append(uid, 3000) as appender:
        appender.write(data[3000:])
        with pytest.raises(HostError) as info:
            appender.write(b"too much")
        assert info.value.code == "body-too-large"
    ref = store.uploads.complete(uid)
    assert (ref.name, ref.size_bytes, ref.sha256) == ("big.bin", len(data), sha(data))
    assert store.usage() | {"quota_bytes": 0} == {
        "used_bytes": len(data),
        "reserved_bytes": 0,
        "quota_bytes": 0,
        "max_artifact_bytes": 1 << 20,
        "artifacts": 1,
        "uploads": 0,
    }
    assert spool_files(store) == []
    with pytest.raises(HostError) as info:
        store.uploads.status(uid)
    assert info.value.code == "unknown-upload"


def test_resumable_upload_survives_a_restart(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    store = ArtifactStore(tmp_path / "a")
    uid = store.uploads.create(size_bytes=len(data), sha256=sha(data)).upload_id  # type: ignore[union-attr]
    with store.uploads.append(uid, 0) as appender:
        appender.write(data[:5000])
    store.close()
    store = ArtifactStore(tmp_path / "a")
    try:
        assert store.usage()["reserved_bytes"] == len(data)
        assert store.uploads.status(uid).offset == 5000
        with store.uploads.append(uid, 5000) as appender:
            appender.write(data[5000:])
        assert store.uploads.complete(uid).sha256 == sha(data)  # hashed from disk
    finally:
        store.close()


def test_resumable_hash_mismatch_drops_the_upload(store: ArtifactStore) -> None:
    uid = store.uploads.create(size_bytes=4, sha256=sha(b"good")).upload_id  # type: ignore[union-attr]
    with store.uploads.append(uid, 0) as appender:
        appender.write(b"evil")
    with pytest.raises(SerializationError) as info:
        store.uploads.complete(uid)
    assert info.value.code == "checksum-mismatch"
    assert store.uploads.drop(uid) is False  # already gone
    assert store.usage()["reserved_bytes"] == 0
    assert store.list() == [] and spool_files(store) == []


def test_resumable_upload_reserves_quota_and_idles_out(store: ArtifactStore) -> None:
    big = store.uploads.create(size_bytes=1 << 20, sha256="0" * 64)
    for _ in range(3):
        store.uploads.create(size_bytes=1 << 20, sha256="1" * 64)
    with pytest.raises(StorageQuotaError):
        store.uploads.create(size_bytes=1, sha256="2" * 64)
    assert store.cleanup_temporary(now=time.time() + 2 * 86400) == 4  # idle past the TTL
    assert store.usage()["reserved_bytes"] == 0
    with pytest.raises(HostError):
        store.uploads.status(big.upload_id)  # type: ignore[union-attr]


def test_resumable_upload_of_known_content_needs_no_bytes(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"payload", name="p", owner_agent_id="job-1")
    again = store.uploads.create(
        size_bytes=7, sha256=sha(b"payload"), name="p", owner_agent_id="job-1"
    )
    assert again == ref
    renamed = store.uploads.create(
        size_bytes=7, sha256=sha(b"payload"), name="q", owner_agent_id="job-1"
    )
    assert isinstance(renamed, ArtifactRef) and renamed.name == "q"
    assert renamed.artifact_id != ref.artifact_id
    other_owner = store.uploads.create(
        size_bytes=7, sha256=sha(b"payload"), name="p", owner_agent_id="job-2"
    )
    assert not isinstance(other_owner, ArtifactRef)  # another owner uploads for real
    assert store.usage()["used_bytes"] == 7


def test_busy_upload_refuses_a_second_writer(store: ArtifactStore) -> None:
    uid = store.uploads.create(size_bytes=4, sha256=sha(b"abcd")).upload_id  # type: ignore[union-attr]
    first = store.uploads.append(uid, 0)
    with pytest.raises(HostError) as info:
        store.uploads.append(uid, 0)
    assert info.value.code == "upload-offset"
    first.write(b"abcd")
    first.close()
    assert store.uploads.complete(uid).size_bytes == 4
