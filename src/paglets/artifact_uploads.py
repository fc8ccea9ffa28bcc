"""Resumable uploads into an `ArtifactStore` (network.md §4): `store.uploads`.

An upload declares its size and SHA-256 up front; its size is reserved against the quota at
once, like a one-shot write. Bytes are appended to `uploads/<upload id>.part`, whose length
*is* the offset (a PUT cut short keeps what arrived, and resumes from there). The running
hash is kept in memory while appends arrive in order in this process; after a restart the
file is hashed once at completion. Idle uploads are dropped after `spool_ttl_seconds`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from paglets.artifact_writes import (
    CHUNK,
    ArtifactMeta,
    check_hex_id,
    check_sha256,
    check_size,
    mismatch,
    unlink_quietly,
)
from paglets.core.errors import HostError

if TYPE_CHECKING:
    from pathlib import Path

    from paglets.artifact_store import ArtifactStore
    from paglets.artifacts import ArtifactRef

__all__ = ["UploadAppender", "UploadSpool", "UploadStatus"]

_ROW = (
    "upload_id, name, size_bytes, sha256, compression, expires_at, owner_agent_id, tag, "
    "keep_after_owner, updated_at"
)


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """An open resumable upload: `offset` bytes of `size_bytes` received so far."""

    upload_id: str
    offset: int
    size_bytes: int
    name: str
    sha256: str
    owner_agent_id: str | None
    updated_at: float

    def to_wire(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id, "offset": self.offset, "size_bytes": self.size_bytes}


class UploadAppender:
    """Appends one PUT's bytes to an upload. `close()` keeps what was written (a broken PUT
    resumes from the new offset) and returns the offset."""

    __slots__ = ("_file", "_hasher", "_spool", "closed", "offset", "size_bytes", "upload_id")

    def __init__(
        self, spool: UploadSpool, upload_id: str, offset: int, size: int, hasher: Any
    ) -> None:
        self._spool = spool
        self.upload_id = upload_id
        self.offset = offset
        self.size_bytes = size
        self._hasher = hasher
        self._file: BinaryIO = open(spool.part_path(upload_id), "ab")  # noqa: SIM115
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.offset + len(data) > self.size_bytes:
            raise HostError(
                f"upload {self.upload_id} declared {self.size_bytes} bytes; this PUT goes past "
                f"that at offset {self.offset}",
                code="body-too-large",
            )
        self._file.write(data)
        if self._hasher is not None:
            self._hasher.update(data)
        self.offset += len(data)

    def close(self) -> int:
        if not self.closed:
            self.closed = True
            self._file.close()
            self._spool._end_append(self.upload_id, self.offset, self._hasher)
        return self.offset

    def __enter__(self) -> UploadAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _offset_error(upload_id: str, requested: int, current: int, why: str) -> HostError:
    err = HostError(
        f"upload {upload_id}: {why}; the upload is at offset {current} (resume from there)",
        code="upload-offset",
    )
    err.detail = {"offset": current, "requested": requested}  # type: ignore[attr-defined]
    return err


class UploadSpool:
    """The open uploads of one store. Shares the store's lock and database."""

    def __init__(self, store: ArtifactStore, directory: Path) -> None:
        self._store = store
        self._lock: threading.RLock = store._lock
        self.directory = directory
        self._busy: set[str] = set()  # uploads with a PUT or a completion in progress
        self._hashers: dict[str, tuple[Any, int]] = {}  # id -> (sha256 state, bytes hashed)

    def part_path(self, upload_id: str) -> Path:
        return self.directory / f"{upload_id}.part"

    def reserved_bytes(self) -> int:
        """Bytes reserved by open uploads (their declared sizes)."""
        return int(self._store._one("SELECT total(size_bytes) FROM uploads"))

    def _row(self, upload_id: str) -> tuple:
        uid = check_hex_id(upload_id, "upload id")
        row = self._store._db.execute(
            f"SELECT {_ROW} FROM uploads WHERE upload_id = ?", (uid,)
        ).fetchone()
        if row is None:
            raise HostError(
                f"no upload {uid!r} on this host (completed, dropped, or idle longer than the "
                f"spool TTL of {self._store.spool_ttl_seconds:g} s); start a new upload",
                code="unknown-upload",
            )
        return row

    def _offset(self, upload_id: str) -> int:
        try:
            return self.part_path(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    # -- the five operations of the protocol --------------------------------------------

    def create(
        self,
        *,
        size_bytes: int,
        sha256: str,
        name: str | None = None,
        owner_agent_id: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
        tag: str = "",
        keep_after_owner: bool = False,
    ) -> UploadStatus | ArtifactRef:
        """Open an upload and reserve its size (413 / 507 before any byte moves). If this
        owner already has an artifact with this content, nothing needs uploading: that
        artifact (the one with the same name, else a new one sharing the bytes) is returned."""
        store = self._store
        store._require_open()
        store.maybe_sweep()
        sha = check_sha256(sha256)
        size = check_size(size_bytes, store.max_artifact_bytes)
        meta = ArtifactMeta.checked(
            name, compression, expires_at, owner_agent_id, tag, keep_after_owner
        )
        existing = store._existing(sha, size, meta)
        if existing is not None:
            return existing
        upload_id = uuid.uuid4().hex
        now = time.time()
        with self._lock:
            reserved = store._reserve(size)
            try:
                self.part_path(upload_id).touch()
                store._db.execute(
                    "INSERT INTO uploads VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (upload_id, meta.name, size, sha, *meta.columns(), now),
                )
            except BaseException:
                store._release(reserved)
                unlink_quietly(self.part_path(upload_id))
                raise
            self._hashers[upload_id] = (hashlib.sha256(), 0)
        return UploadStatus(upload_id, 0, size, meta.name, sha, meta.owner_agent_id, now)

    def status(self, upload_id: str) -> UploadStatus:
        with self._lock:
            self._store._require_open()
            row = self._row(upload_id)
            return UploadStatus(
                row[0], self._offset(row[0]), row[2], row[1], row[3], row[6], row[9]
            )

    def append(self, upload_id: str, offset: int) -> UploadAppender:
        """Start appending at `offset`, which must be the current offset, else
        `HostError(code="upload-offset")` with `detail={"offset": current}`."""
        with self._lock:
            self._store._require_open()
            row = self._row(upload_id)
            uid = row[0]
            current = self._offset(uid)
            if uid in self._busy:
                raise _offset_error(uid, offset, current, "another request is writing it")
            if offset != current:
                raise _offset_error(uid, offset, current, f"offset {offset} is not the end")
            hasher, hashed = self._hashers.pop(uid, (None, -1))
            if hashed != current:
                hasher = None  # bytes from an earlier process: hashed at completion
            appender = UploadAppender(self, uid, current, row[2], hasher)
            self._busy.add(uid)
            return appender

    def _end_append(self, upload_id: str, offset: int, hasher: Any) -> None:
        with self._lock:
            self._busy.discard(upload_id)
            if hasher is not None:
                self._hashers[upload_id] = (hasher, offset)
            if not self._store.closed:
                self._store._db.execute(
                    "UPDATE uploads SET updated_at = ? WHERE upload_id = ?",
                    (time.time(), upload_id),
                )

    def complete(self, upload_id: str) -> ArtifactRef:
        """Check size and SHA-256 and publish the artifact. A short upload is
        `upload-offset` (kept: resume it); a wrong hash is `checksum-mismatch` (dropped)."""
        with self._lock:
            self._store._require_open()
            row = self._row(upload_id)
            uid, size = row[0], row[2]
            current = self._offset(uid)
            if uid in self._busy:
                raise _offset_error(uid, current, current, "another request is writing it")
            if current != size:
                raise _offset_error(uid, size, current, f"only {current} of {size} bytes arrived")
            self._busy.add(uid)
            hasher, hashed = self._hashers.pop(uid, (None, -1))
        try:
            part = self.part_path(uid)
            with open(part, "r+b") as f:
                if hasher is None or hashed != size:
                    hasher = hashlib.sha256()
                    while chunk := f.read(CHUNK):
                        hasher.update(chunk)
                os.fsync(f.fileno())
            digest = hasher.hexdigest()
            if digest != row[3]:
                self.drop(uid, force=True)
                raise mismatch(
                    f"upload {uid}: sha256 of the received bytes is {digest}, not the declared "
                    f"{row[3]}; the upload was dropped"
                )
            meta = ArtifactMeta(row[1], row[4], row[5], row[6], row[7], bool(row[8]))
            return self._store._publish(part, digest, size, meta, uid, release=size)
        finally:
            with self._lock:
                self._busy.discard(uid)

    def drop(self, upload_id: str, *, force: bool = False) -> bool:
        """Abandon an upload: its `.part` file goes and its reservation is released.
        `False` if there was no such upload."""
        with self._lock:
            try:
                row = self._row(upload_id)
            except HostError as exc:
                if exc.code == "unknown-upload":
                    return False
                raise
            uid = row[0]
            if uid in self._busy and not force:
                raise _offset_error(uid, 0, self._offset(uid), "a request is writing it")
            self._store._db.execute("DELETE FROM uploads WHERE upload_id = ?", (uid,))
            self._store._release(row[2])
            self._hashers.pop(uid, None)
            unlink_quietly(self.part_path(uid))
            return True

    def cleanup(self, now: float) -> int:
        """Drop uploads idle for the spool TTL and `.part` files without an upload row."""
        removed = 0
        with self._lock:
            idle = [
                r[0]
                for r in self._store._db.execute(
                    "SELECT upload_id FROM uploads WHERE updated_at <= ?",
                    (now - self._store.spool_ttl_seconds,),
                )
            ]
            for uid in idle:
                if uid not in self._busy and self.drop(uid):
                    removed += 1
            known = {r[0] for r in self._store._db.execute("SELECT upload_id FROM uploads")}
            for part in self.directory.glob("*.part"):
                if part.stem not in known:
                    unlink_quietly(part)
                    removed += 1
        return removed
