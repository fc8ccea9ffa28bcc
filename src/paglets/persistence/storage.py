"""Per-class persistent storage: a directory of files with a byte quota.

One `ManagedStorage` exists per paglet class on a host (`storage/<module.qualname>/`), shared
by that class's instances. Usage is counted once, by a scan at construction, then tracked
incrementally, so a write never walks the tree. Writes are atomic (a temporary file in the
target's directory, then `os.replace`), and the quota check and the rename happen together
under one lock: two writers can never both pass the check and overshoot the quota.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paglets.core.errors import StorageQuotaError

__all__ = ["DEFAULT_QUOTA_BYTES", "ManagedStorage", "StorageStatus"]

DEFAULT_QUOTA_BYTES = 10 * 1024 * 1024

# Temporary files live next to their target (same filesystem, so the rename is atomic).
# They are never counted, listed or readable; leftovers of a crash are swept at the scan.
_TMP_PREFIX = ".paglets-tmp-"
_STALE_TMP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class StorageStatus:
    """Usage of a storage directory; `quota_bytes`/`available_bytes` are None when unlimited."""

    root: str
    used_bytes: int
    quota_bytes: int | None
    available_bytes: int | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "used_bytes": self.used_bytes,
            "quota_bytes": self.quota_bytes,
            "available_bytes": self.available_bytes,
        }


class _Usage:
    """The byte counter and lock shared by a storage and its `limited()` views."""

    __slots__ = ("lock", "used")

    def __init__(self, used: int) -> None:
        self.lock = threading.Lock()
        self.used = used


def _check_quota(quota_bytes: int | None) -> int | None:
    if quota_bytes is None:
        return None
    if isinstance(quota_bytes, bool) or not isinstance(quota_bytes, int) or quota_bytes < 0:
        raise ValueError(f"quota_bytes must be a non-negative int or None, got {quota_bytes!r}")
    return quota_bytes


def _scan(root: Path) -> int:
    """Bytes used by the regular files under `root`; removes stale temporary files."""
    total = 0
    now = time.time()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if name.startswith(_TMP_PREFIX):
                # A writer killed between write and rename leaves one; a fresh one may belong
                # to a writer in another storage object on this root, so only old ones go.
                if now - st.st_mtime > _STALE_TMP_SECONDS:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                continue
            total += st.st_size
    return total


class ManagedStorage:
    """Files under `root`, addressed by relative paths, with a byte quota (None = unlimited).

    Paths are relative, '/'-separated; '..', absolute paths and symlinks that lead outside
    the root raise `ValueError`. A write that would take usage over the quota raises
    `StorageQuotaError` and leaves the old content in place.
    """

    __slots__ = ("_fsync", "_quota", "_root", "_usage")

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        quota_bytes: int | None = DEFAULT_QUOTA_BYTES,
        fsync: bool = False,
    ) -> None:
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        self._root = path.resolve()
        self._quota = _check_quota(quota_bytes)
        self._fsync = fsync
        self._usage = _Usage(_scan(self._root))

    # -- views ---------------------------------------------------------------------------

    def limited(self, quota_bytes: int | None) -> ManagedStorage:
        """A view on the same files and usage counter whose quota is at most `quota_bytes`.

        A paglet may lower its class's quota, never raise it: the result's quota is
        `min(quota_bytes, self.quota_bytes)`. `None` keeps this storage's quota.
        """
        requested = _check_quota(quota_bytes)
        if requested is None:
            quota = self._quota
        elif self._quota is None:
            quota = requested
        else:
            quota = min(requested, self._quota)
        view = object.__new__(ManagedStorage)
        view._root = self._root
        view._quota = quota
        view._fsync = self._fsync
        view._usage = self._usage
        return view

    @property
    def root(self) -> Path:
        return self._root

    @property
    def quota_bytes(self) -> int | None:
        return self._quota

    # -- paths ---------------------------------------------------------------------------

    def _path(self, rel: str | os.PathLike[str]) -> Path:
        raw = os.fspath(rel)
        if not isinstance(raw, str):
            raise TypeError(f"storage path must be a str, got {rel!r}")
        text = raw.replace("\\", "/")
        if not text or text.strip("/") == "" or text.startswith("/") or Path(raw).is_absolute():
            raise ValueError(
                f"storage path {raw!r} must be a non-empty path relative to the storage root"
            )
        parts = [part for part in text.split("/") if part not in ("", ".")]
        if not parts:
            raise ValueError(f"storage path {raw!r} names the storage root itself, not a file")
        if ".." in parts:
            raise ValueError(f"storage path {raw!r} may not contain '..' (it would leave the root)")
        if "\x00" in text:
            raise ValueError(f"storage path {raw!r} contains a NUL character")
        if parts[-1].startswith(_TMP_PREFIX):
            raise ValueError(f"storage path {raw!r}: names starting {_TMP_PREFIX!r} are reserved")
        path = self._root.joinpath(*parts)
        # Symlinks (placed by hand or by other code) must not lead outside the root.
        resolved = path.resolve()
        if resolved != self._root and not resolved.is_relative_to(self._root):
            raise ValueError(
                f"storage path {raw!r} resolves to {str(resolved)!r}, outside the storage root "
                f"{str(self._root)!r}"
            )
        return path

    # -- reads ---------------------------------------------------------------------------

    def read_bytes(self, rel: str | os.PathLike[str]) -> bytes:
        return self._path(rel).read_bytes()

    def read_text(self, rel: str | os.PathLike[str], encoding: str = "utf-8") -> str:
        return self._path(rel).read_text(encoding=encoding)

    def exists(self, rel: str | os.PathLike[str]) -> bool:
        return self._path(rel).is_file()

    def list(self, prefix: str = "") -> list[str]:
        """Relative paths ('/'-separated, sorted) of the stored files starting with `prefix`."""
        found: list[str] = []
        root = str(self._root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if rel.startswith(prefix):
                    found.append(rel)
        found.sort()
        return found

    def status(self) -> StorageStatus:
        used = self._usage.used
        quota = self._quota
        available = None if quota is None else max(0, quota - used)
        return StorageStatus(str(self._root), used, quota, available)

    # -- writes --------------------------------------------------------------------------

    def _quota_error(self, rel: Any, used: int, requested: int, delta: int) -> StorageQuotaError:
        return StorageQuotaError(
            f"storage quota exceeded in {str(self._root)!r}: writing {requested} bytes to "
            f"{os.fspath(rel)!r} needs {delta} more bytes, but {used} of {self._quota} bytes "
            "are used; delete files or raise the quota (--persistent-storage-quota)",
            code="quota-exceeded",
        )

    def write_bytes(
        self, rel: str | os.PathLike[str], data: bytes | bytearray | memoryview
    ) -> None:
        """Replace the file `rel` with `data`, atomically, within the quota."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"write_bytes needs bytes, got {type(data).__name__}")
        path = self._path(rel)
        size = memoryview(data).nbytes
        usage = self._usage
        quota = self._quota
        # Cheap early refusal, before writing anything: even replacing the largest possible
        # old file could not make room for this one.
        if quota is not None and size > quota:
            raise self._quota_error(rel, usage.used, size, size)
        tmp = self._write_temp(path, data)
        try:
            with usage.lock:
                try:
                    old = os.lstat(path).st_size
                except FileNotFoundError:
                    old = 0
                delta = size - old
                if quota is not None and delta > 0 and usage.used + delta > quota:
                    raise self._quota_error(rel, usage.used, size, delta)
                os.replace(tmp, path)
                tmp = None
                usage.used += delta
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def write_text(self, rel: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(rel, text.encode(encoding))

    def _write_temp(self, path: Path, data: bytes | bytearray | memoryview) -> str:
        parent = path.parent
        tmp = os.path.join(parent, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        for attempt in range(3):
            parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileNotFoundError:
                # A concurrent clear() removed the freshly made directory; make it again.
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self._fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp

    def delete(self, rel: str | os.PathLike[str]) -> bool:
        """Remove the file `rel`; True if it existed."""
        path = self._path(rel)
        with self._usage.lock:
            try:
                size = os.lstat(path).st_size
                os.unlink(path)
            except FileNotFoundError:
                return False
            self._usage.used = max(0, self._usage.used - size)
        return True

    def clear(self) -> None:
        """Remove every stored file and directory under the root (the root stays)."""
        root = str(self._root)
        with self._usage.lock:
            for dirpath, dirnames, filenames in os.walk(root, topdown=False):
                for name in filenames:
                    if name.startswith(_TMP_PREFIX):
                        continue  # a writer's in-flight file: it is not counted yet
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, name))
                for name in dirnames:
                    sub = os.path.join(dirpath, name)
                    if os.path.islink(sub):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(sub)
                        continue
                    with contextlib.suppress(OSError):  # not empty: holds an in-flight file
                        os.rmdir(sub)
            self._usage.used = 0

    def __repr__(self) -> str:
        return f"ManagedStorage({str(self._root)!r}, quota_bytes={self._quota!r})"
