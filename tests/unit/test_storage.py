"""ManagedStorage: quota, atomic writes, path safety, shared usage, limited views."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from paglets.core.errors import StorageQuotaError
from paglets.persistence import ManagedStorage, StorageStatus


def test_read_write_list_delete(tmp_path: Path) -> None:
    storage = ManagedStorage(tmp_path / "s", quota_bytes=1000)
    storage.write_bytes("a.bin", b"12345")
    storage.write_text("dir/sub/b.txt", "héllo")
    assert storage.read_bytes("a.bin") == b"12345"
    assert storage.read_text("dir/sub/b.txt") == "héllo"
    assert storage.exists("a.bin") and not storage.exists("missing")
    assert storage.list() == ["a.bin", "dir/sub/b.txt"]
    assert storage.list("dir/") == ["dir/sub/b.txt"]
    assert storage.status() == StorageStatus(
        str((tmp_path / "s").resolve()), 5 + len("héllo".encode()), 1000, 1000 - 11
    )
    assert storage.delete("a.bin") is True
    assert storage.delete("a.bin") is False
    assert storage.status().used_bytes == len("héllo".encode())
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("a.bin")


def test_overwrite_counts_only_the_difference(tmp_path: Path) -> None:
    storage = ManagedStorage(tmp_path, quota_bytes=100)
    storage.write_bytes("f", b"x" * 80)
    storage.write_bytes("f", b"y" * 100)  # replaces 80 bytes: fits exactly
    assert storage.status().used_bytes == 100
    storage.write_bytes("f", b"z" * 10)
    assert storage.status().used_bytes == 10
    assert storage.read_bytes("f") == b"z" * 10


def test_over_quota_raises_and_keeps_old_content(tmp_path: Path) -> None:
    storage = ManagedStorage(tmp_path, quota_bytes=100)
    storage.write_bytes("a", b"a" * 60)
    with pytest.raises(StorageQuotaError) as info:
        storage.write_bytes("b", b"b" * 50)
    message = str(info.value)
    assert "60" in message and "100" in message and "50" in message
    with pytest.raises(StorageQuotaError):
        storage.write_bytes("huge", b"h" * 101)
    assert storage.list() == ["a"]  # no temp file left behind, nothing partial
    assert storage.status().used_bytes == 60
    assert os.listdir(tmp_path) == ["a"]


def test_usage_is_scanned_at_construction(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"1234")
    (tmp_path / "y").write_bytes(b"12")
    storage = ManagedStorage(tmp_path, quota_bytes=10)
    assert storage.status().used_bytes == 6
    assert storage.status().available_bytes == 4


def test_clear_removes_everything(tmp_path: Path) -> None:
    storage = ManagedStorage(tmp_path / "root")
    storage.write_bytes("a/b/c", b"1")
    storage.write_bytes("d", b"22")
    storage.clear()
    assert storage.list() == []
    assert storage.status().used_bytes == 0
    assert (tmp_path / "root").is_dir()
    assert list((tmp_path / "root").iterdir()) == []


@pytest.mark.parametrize(
    "rel", ["../x", "a/../../x", "/etc/passwd", "", ".", "a/..", "..", "./../x", "\\..\\x"]
)
def test_escaping_paths_are_refused(tmp_path: Path, rel: str) -> None:
    storage = ManagedStorage(tmp_path / "root")
    with pytest.raises(ValueError):
        storage.write_bytes(rel, b"x")
    with pytest.raises(ValueError):
        storage.read_bytes(rel)
    with pytest.raises(ValueError):
        storage.delete(rel)
    assert not (tmp_path / "x").exists()


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    storage = ManagedStorage(root)
    with pytest.raises(ValueError, match="outside"):
        storage.read_text("link/secret")
    with pytest.raises(ValueError, match="outside"):
        storage.write_text("link/new", "x")
    assert not (outside / "new").exists()


def test_concurrent_writers_never_exceed_quota(tmp_path: Path) -> None:
    quota = 10_000
    storage = ManagedStorage(tmp_path, quota_bytes=quota)
    chunk = b"c" * 700
    refused = []
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(20):
            try:
                storage.write_bytes(f"w{n}/f{i}", chunk)
            except StorageQuotaError:
                refused.append((n, i))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    on_disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert on_disk <= quota
    assert storage.status().used_bytes == on_disk
    assert len(storage.list()) == quota // len(chunk)
    assert len(refused) == 8 * 20 - quota // len(chunk)


def test_limited_view_shares_usage_and_only_lowers_quota(tmp_path: Path) -> None:
    host = ManagedStorage(tmp_path, quota_bytes=100)
    small = host.limited(30)
    assert small.quota_bytes == 30
    assert host.limited(1_000).quota_bytes == 100  # cannot raise the host quota
    assert host.limited(None).quota_bytes == 100
    small.write_bytes("a", b"a" * 20)
    assert host.status().used_bytes == 20  # one counter
    with pytest.raises(StorageQuotaError):
        small.write_bytes("b", b"b" * 20)
    host.write_bytes("b", b"b" * 20)
    assert small.status().used_bytes == 40
    assert small.status().available_bytes == 0
    assert small.read_bytes("b") == b"b" * 20
    with pytest.raises(ValueError):
        host.limited(-1)


def test_unlimited_quota(tmp_path: Path) -> None:
    storage = ManagedStorage(tmp_path, quota_bytes=None)
    storage.write_bytes("big", b"x" * 100_000)
    status = storage.status()
    assert status.quota_bytes is None and status.available_bytes is None
    assert storage.limited(10).quota_bytes == 10


def test_stale_temp_files_are_swept_and_not_counted(tmp_path: Path) -> None:
    stale = tmp_path / ".paglets-tmp-deadbeef"
    stale.write_bytes(b"x" * 50)
    os.utime(stale, (1, 1))
    fresh = tmp_path / ".paglets-tmp-cafe"
    fresh.write_bytes(b"y" * 50)
    storage = ManagedStorage(tmp_path)
    assert storage.status().used_bytes == 0
    assert not stale.exists()
    assert storage.list() == []
    with pytest.raises(ValueError, match="reserved"):
        storage.write_bytes(".paglets-tmp-x", b"")
