"""`ArtifactStore`: the host's checked, quota-bound store of artifact bytes (network.md §4,
jobs.md §5). Import it as `from paglets.artifacts import ArtifactStore`. One-shot writes
are `paglets.artifact_writes`, resumable uploads `paglets.artifact_uploads` (`store.uploads`).

Layout under `root` (the host's `artifacts/` dir):

* `artifacts.db`: SQLite metadata. Its own file rather than a table in `paglets.db`, so the
  store opens lazily, never contends with the paglet store's group commits, and can be
  dropped with the directory. Tables: `artifacts` (one row per artifact id), `blobs` (one row
  per distinct content, the bytes that count against the quota) and `uploads` (open
  resumable uploads).
* `blobs/<sha[:2]>/<sha256>`: the bytes, shared by every artifact with that content and
  deleted with the last of them.
* `tmp/<writer id>.part`: one-shot uploads being written; `uploads/<upload id>.part`:
  resumable uploads (they survive a restart until `spool_ttl_seconds` of idleness).

Writes go to a `.part` file, hashed while streaming, checked for size and SHA-256, fsynced
and renamed into place; only then does a row say the artifact exists. A crash leaves either a
`.part` file or a blob without a row, both removed at the next open. Quota: a write first
reserves its declared length (64 MiB steps when unknown) under the store lock, so
used + reserved never exceeds the quota however many uploads race; commit turns the
reservation into real bytes, failure releases it.

Thread-safe: one SQLite connection behind one re-entrant lock; chunk writes and hashing run
outside the lock.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import secrets
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from paglets.artifact_uploads import UploadSpool
from paglets.artifact_writes import (
    CHUNK,
    ArtifactMeta,
    ArtifactWriter,
    check_sha256,
    check_size,
    is_hex,
    mismatch,
    not_found,
    unlink_quietly,
)
from paglets.artifacts import ArtifactRef, safe_file_name
from paglets.core.errors import HostError, StorageQuotaError
from paglets.core.ids import validate_agent_id

__all__ = ["ArtifactStore"]

MiB = 1024 * 1024
GiB = 1024 * MiB
SWEEP_INTERVAL = 300.0  # expired artifacts and stale spool files go at least this often

_SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    compression TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    owner_agent_id TEXT,
    tag TEXT NOT NULL,
    keep_after_owner INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS artifacts_by_sha ON artifacts(sha256);
CREATE INDEX IF NOT EXISTS artifacts_by_owner ON artifacts(owner_agent_id)
    WHERE owner_agent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS artifacts_expiring ON artifacts(expires_at) WHERE expires_at > 0;
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY NOT NULL,
    size_bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    compression TEXT NOT NULL,
    expires_at REAL NOT NULL,
    owner_agent_id TEXT,
    tag TEXT NOT NULL,
    keep_after_owner INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
"""
_COLUMNS = (
    "artifact_id, name, size_bytes, sha256, compression, created_at, expires_at, owner_agent_id"
)


class ArtifactStore:
    """Host-owned artifact bytes with size/SHA-256 checks, quota reservation and expiry.

    `max_artifact_bytes` / `quota_bytes`: `None` = unlimited. `host_url`, `host_name`,
    `host_id` are copied into the `ArtifactRef`s this store returns.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_artifact_bytes: int | None = GiB,
        quota_bytes: int | None = 10 * GiB,
        spool_ttl_seconds: float = 86400.0,
        host_url: str = "",
        host_name: str | None = None,
        host_id: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.max_artifact_bytes = max_artifact_bytes
        self.quota_bytes = quota_bytes
        self.spool_ttl_seconds = float(spool_ttl_seconds)
        self.host_url = host_url
        self.host_name = host_name
        self.host_id = host_id
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"
        for d in (self._blobs, self._tmp, self.root / "uploads"):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.root / "artifacts.db", check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._live_parts: set[Path] = set()  # one-shot .part files being written
        self.closed = False
        self._last_sweep = 0.0
        self.uploads = UploadSpool(self, self.root / "uploads")
        with self._lock:
            self._used = int(self._one("SELECT total(size_bytes) FROM blobs"))
            self._reserved = self.uploads.reserved_bytes()
            self._recover()

    # -- small helpers ----------------------------------------------------------------

    def _one(self, sql: str, args: tuple = ()) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return row[0] if row else None

    def _ref(self, row: tuple) -> ArtifactRef:
        return ArtifactRef(
            host_url=self.host_url,
            artifact_id=row[0],
            name=row[1],
            size_bytes=row[2],
            sha256=row[3],
            compression=row[4],
            created_at=row[5],
            expires_at=row[6],
            owner_agent_id=row[7],
            host_id=self.host_id,
            host_name=self.host_name,
        )

    def _blob_path(self, sha256: str) -> Path:
        return self._blobs / sha256[:2] / sha256

    def _require_open(self) -> None:
        if self.closed:
            raise HostError("the artifact store is closed (its host stopped)")

    def _reserve(self, need: int, *, prefer: int = 0, cap: int | None = None) -> int:
        """Reserve `need` bytes (more, up to `prefer`, if the quota has room); returns the
        amount reserved or raises `StorageQuotaError`. Under the lock, so races cannot
        overshoot the quota."""
        with self._lock:
            quota = self.quota_bytes
            free = None if quota is None else quota - self._used - self._reserved
            if free is not None and need > free:
                raise StorageQuotaError(
                    f"artifact store quota exceeded: {need} more bytes needed, {max(free, 0)} "
                    f"free of {quota} (used {self._used}, reserved by uploads in progress "
                    f"{self._reserved}); delete artifacts or raise --artifact-storage-quota",
                    code="quota-exceeded",
                )
            amount = max(need, prefer)
            if cap is not None:
                amount = max(need, min(amount, cap))
            if free is not None:
                amount = min(amount, free)
            self._reserved += amount
            return amount

    def _release(self, amount: int) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - amount)

    # -- writing ------------------------------------------------------------------------

    def open_writer(
        self,
        *,
        size_bytes: int | None = None,
        sha256: str | None = None,
        name: str | None = None,
        owner_agent_id: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
        tag: str = "",
        keep_after_owner: bool = False,
    ) -> ArtifactWriter:
        """Start a one-shot write. `size_bytes` (if known) is reserved now, so an upload that
        cannot fit is refused before any byte is read (413 / 507)."""
        self._require_open()
        self.maybe_sweep()
        meta = ArtifactMeta.checked(
            name, compression, expires_at, owner_agent_id, tag, keep_after_owner
        )
        expected = check_sha256(sha256) if sha256 else None
        if size_bytes is not None:
            reserved = self._reserve(check_size(size_bytes, self.max_artifact_bytes))
        else:
            reserved = 0
        part = self._tmp / f"{secrets.token_hex(16)}.part"  # not uuid: ids come from uuid4 only
        with self._lock:
            self._live_parts.add(part)
        try:
            return ArtifactWriter(self, part, meta, size_bytes, expected, reserved)
        except BaseException:
            self._finish_writer(part, reserved)
            raise

    def _finish_writer(self, part: Path, reserved: int) -> None:
        with self._lock:
            self._live_parts.discard(part)
            self._reserved = max(0, self._reserved - reserved)

    def _publish(
        self,
        part: Path | None,
        sha256: str,
        size: int,
        meta: ArtifactMeta,
        upload_id: str | None,
        release: int = 0,
    ) -> ArtifactRef:
        """Move a checked `.part` into the blob store (or drop it if the content is already
        there; `part=None`: the content must be there) and add the artifact row, in one
        transaction. A nameless artifact is called `artifact-<id[:12]>`.

        `release` bytes of reservation turn into the real bytes in the same locked step,
        so a concurrent writer never sees them counted twice (used and reserved)."""
        artifact_id = uuid.uuid4().hex
        now = time.time()
        row = (
            artifact_id,
            meta.name or f"artifact-{artifact_id[:12]}",
            size,
            sha256,
            meta.compression,
            now,
            meta.expires_at,
            meta.owner_agent_id,
            meta.tag,
            int(meta.keep_after_owner),
        )
        blob = self._blob_path(sha256)
        with self._lock:
            self._require_open()
            known = self._one("SELECT 1 FROM blobs WHERE sha256 = ?", (sha256,)) is not None
            if part is None:
                if not known:
                    raise not_found(sha256)
            elif known and blob.exists():
                unlink_quietly(part)
            else:
                blob.parent.mkdir(exist_ok=True)
                os.replace(part, blob)
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if not known:
                    db.execute("INSERT INTO blobs VALUES (?, ?)", (sha256, size))
                db.execute("INSERT INTO artifacts VALUES (?,?,?,?,?,?,?,?,?,?)", row)
                if upload_id is not None:
                    db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                if not known:
                    unlink_quietly(blob)
                raise
            if not known:
                self._used += size
            self._reserved = max(0, self._reserved - release)
        return self._ref(row[:8])

    def put_file(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        owner_agent_id: str | None = None,
        compression: str = "",
        expires_at: float = 0.0,
        sha256: str | None = None,
        tag: str = "",
        keep_after_owner: bool = False,
        move: bool = False,
    ) -> ArtifactRef:
        """Store a local file (copied in 1 MiB chunks, hashed on the way); `move=True`
        deletes the source once the artifact is stored."""
        src = Path(path)
        with open(src, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            with self.open_writer(
                size_bytes=size,
                sha256=sha256,
                name=name or safe_file_name(src.name, "artifact"),
                owner_agent_id=owner_agent_id,
                compression=compression,
                expires_at=expires_at,
                tag=tag,
                keep_after_owner=keep_after_owner,
            ) as writer:
                while chunk := f.read(CHUNK):
                    writer.write(chunk)
                ref = writer.commit()
        if move:
            src.unlink()
        return ref

    def put_bytes(self, data: bytes, **meta: Any) -> ArtifactRef:
        """Store `data` (small payloads and tests); keywords as `open_writer`."""
        with self.open_writer(size_bytes=len(data), **meta) as writer:
            view = memoryview(data)
            for i in range(0, len(data), CHUNK):
                writer.write(view[i : i + CHUNK])
            return writer.commit()

    # -- reading ------------------------------------------------------------------------

    def resolve(self, id_or_prefix: str) -> str:
        """The full id for an id or a unique prefix of at least 8 hex characters.

        Raises `HostError` with code `bad-artifact-id`, `artifact-not-found` or
        `ambiguous-id` (`detail={"candidates": [...]}`)."""
        if not isinstance(id_or_prefix, str):
            raise HostError(f"bad artifact id {id_or_prefix!r}", code="bad-artifact-id")
        prefix = id_or_prefix.strip().lower()
        if not 8 <= len(prefix) <= 32 or not is_hex(prefix):
            raise HostError(
                f"bad artifact id {id_or_prefix!r}: give the 32-hex id or a unique prefix of "
                "at least 8 hex characters",
                code="bad-artifact-id",
            )
        now = time.time()
        with self._lock:
            self._require_open()
            rows = self._db.execute(
                "SELECT artifact_id FROM artifacts WHERE artifact_id >= ? AND artifact_id < ? "
                "AND (expires_at = 0 OR expires_at > ?) ORDER BY artifact_id LIMIT 21",
                (prefix, prefix + "g", now),
            ).fetchall()
        if not rows:
            raise not_found(id_or_prefix)
        if len(rows) > 1:
            candidates = [r[0] for r in rows]
            err = HostError(
                f"artifact id prefix {id_or_prefix!r} matches {len(rows)} artifacts "
                f"({', '.join(c[:12] for c in candidates[:5])}{', ...' if len(rows) > 5 else ''}); "
                "give more characters",
                code="ambiguous-id",
            )
            err.detail = {"candidates": candidates}  # type: ignore[attr-defined]
            raise err
        return rows[0][0]

    def get(self, id_or_prefix: str) -> ArtifactRef:
        """The artifact's ref; `HostError(code="artifact-not-found")` if missing or expired."""
        artifact_id = self.resolve(id_or_prefix)
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM artifacts WHERE artifact_id = ?", (artifact_id,)
            ).fetchone()
        if row is None:
            raise not_found(id_or_prefix)
        return self._ref(row)

    def list(
        self,
        owner_agent_id: str | None = None,
        *,
        sha256: str | None = None,
        tag: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[ArtifactRef]:
        """Live (unexpired) artifacts by id order; `after` = the last id of the previous page."""
        self.maybe_sweep()
        where: builtins.list[str] = ["(expires_at = 0 OR expires_at > ?)"]
        args: builtins.list[Any] = [time.time()]
        if owner_agent_id is not None:
            where.append("owner_agent_id = ?")
            args.append(validate_agent_id(owner_agent_id))
        if sha256 is not None:
            where.append("sha256 = ?")
            args.append(check_sha256(sha256))
        if tag is not None:
            where.append("tag = ?")
            args.append(tag)
        if after:
            where.append("artifact_id > ?")
            args.append(str(after).lower())
        sql = f"SELECT {_COLUMNS} FROM artifacts WHERE {' AND '.join(where)} ORDER BY artifact_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            self._require_open()
            rows = self._db.execute(sql, args).fetchall()
        return [self._ref(r) for r in rows]

    def open_blob(self, id_or_prefix: str) -> tuple[ArtifactRef, BinaryIO]:
        """The ref and an open binary file of its bytes (the caller closes it). A delete or
        sweep while the file is open does not cut the read short (POSIX keeps the inode)."""
        ref = self.get(id_or_prefix)
        with self._lock:
            try:
                f = open(self._blob_path(ref.sha256), "rb")  # noqa: SIM115 - caller closes
            except FileNotFoundError:
                raise not_found(id_or_prefix) from None
        return ref, f

    def export_to_path(
        self, id_or_prefix: str, target: str | os.PathLike[str], *, move: bool = False
    ) -> Path:
        """Copy the artifact to `target` (a file path, or a directory to put it in under its
        sanitised name) through a hidden `.part` file, checking size and SHA-256 before the
        rename; `move=True` deletes the artifact afterwards."""
        ref, f = self.open_blob(id_or_prefix)
        dest = Path(target)
        if dest.is_dir():
            dest = dest / safe_file_name(ref.name, ref.artifact_id)
        part = dest.parent / f".{dest.name}.{ref.sha256[:16]}.part"
        hasher, size = hashlib.sha256(), 0
        try:
            with f, open(part, "wb") as out:
                while chunk := f.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size != ref.size_bytes or hasher.hexdigest() != ref.sha256:
                raise mismatch(
                    f"stored bytes of artifact {ref.artifact_id} do not match its size/sha256 "
                    "(disk corruption?); nothing was written"
                )
            os.replace(part, dest)
        except BaseException:
            unlink_quietly(part)
            raise
        if move:
            self.delete(ref.artifact_id)
        return dest

    # -- deleting and expiry -------------------------------------------------------------

    def delete(self, id_or_prefix: str) -> bool:
        """Delete one artifact (its blob goes with the last artifact sharing it). `False`
        if there was no such artifact."""
        try:
            artifact_id = self.resolve(id_or_prefix)
        except HostError as exc:
            if exc.code == "artifact-not-found":
                return False
            raise
        return self._delete_ids([artifact_id]) == 1

    def _delete_ids(self, ids: builtins.list[str]) -> int:
        doomed: builtins.list[Path] = []
        deleted = 0
        with self._lock:
            self._require_open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for artifact_id in ids:
                    sha = self._one(
                        "SELECT sha256 FROM artifacts WHERE artifact_id = ?", (artifact_id,)
                    )
                    if sha is None:
                        continue
                    db.execute("DELETE FROM artifacts WHERE artifact_id = ?", (artifact_id,))
                    deleted += 1
                    if self._one("SELECT 1 FROM artifacts WHERE sha256 = ? LIMIT 1", (sha,)):
                        continue
                    size = self._one("SELECT size_bytes FROM blobs WHERE sha256 = ?", (sha,))
                    db.execute("DELETE FROM blobs WHERE sha256 = ?", (sha,))
                    self._used -= int(size or 0)
                    doomed.append(self._blob_path(sha))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._used = int(self._one("SELECT total(size_bytes) FROM blobs"))
                raise
            # Under the lock: a concurrent publish of the same content must not see the row
            # gone but the file still there. A file that cannot go now (open for a download
            # on Windows) is an orphan that the next open removes; POSIX readers keep reading.
            for path in doomed:
                try:
                    unlink_quietly(path)
                except OSError:
                    pass
        return deleted

    def delete_owner(self, agent_id: str) -> int:
        """Delete every artifact owned by `agent_id`; returns how many."""
        validate_agent_id(agent_id)
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT artifact_id FROM artifacts WHERE owner_agent_id = ?", (agent_id,)
                )
            ]
        return self._delete_ids(ids) if ids else 0

    def expire_owner(self, agent_id: str, *, grace_seconds: float = 3600.0) -> int:
        """Owner cleanup (jobs.md §5): the owner was disposed, so its artifacts without
        `keep_after_owner` expire after `grace_seconds` (sooner if already due)."""
        validate_agent_id(agent_id)
        at = time.time() + grace_seconds
        with self._lock:
            self._require_open()
            cur = self._db.execute(
                "UPDATE artifacts SET expires_at = ? WHERE owner_agent_id = ? "
                "AND keep_after_owner = 0 AND (expires_at = 0 OR expires_at > ?)",
                (at, agent_id, at),
            )
            return cur.rowcount

    def set_owner(self, id_or_prefix: str, owner_agent_id: str | None) -> ArtifactRef:
        """Hand an artifact to another owner (`context.transfer_artifact`)."""
        if owner_agent_id is not None:
            validate_agent_id(owner_agent_id)
        artifact_id = self.resolve(id_or_prefix)
        with self._lock:
            self._db.execute(
                "UPDATE artifacts SET owner_agent_id = ? WHERE artifact_id = ?",
                (owner_agent_id, artifact_id),
            )
        return self.get(artifact_id)

    def sweep_expired(self, now: float | None = None) -> int:
        """Delete artifacts whose `expires_at` has passed; returns how many."""
        now = time.time() if now is None else now
        with self._lock:
            self._require_open()
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT artifact_id FROM artifacts WHERE expires_at > 0 AND expires_at <= ?",
                    (now,),
                )
            ]
        return self._delete_ids(ids) if ids else 0

    def cleanup_temporary(self, now: float | None = None) -> int:
        """Remove spool files nothing is writing: one-shot `.part` files of dead writers,
        resumable uploads idle for `spool_ttl_seconds` (their reservation is released) and
        `.part` files without an upload row. Returns the number of files removed."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            for part in self._tmp.glob("*.part"):
                if part not in self._live_parts:
                    unlink_quietly(part)
                    removed += 1
            removed += self.uploads.cleanup(now)
        return removed

    def maybe_sweep(self) -> None:
        """Run `sweep_expired` and `cleanup_temporary` if the last run is older than 300 s.
        Called from writes and listings, so a host without a maintenance timer still sweeps."""
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_INTERVAL:
            return
        self._last_sweep = now
        self.sweep_expired()
        self.cleanup_temporary()

    def _recover(self) -> None:
        """At open: drop one-shot `.part` files (their writers died with the process) and
        blob files without a row (a crash between rename and commit, or unlink and delete)."""
        self.cleanup_temporary()
        known = {r[0] for r in self._db.execute("SELECT sha256 FROM blobs")}
        for sub in self._blobs.iterdir():
            if not sub.is_dir():
                continue
            for blob in sub.iterdir():
                if blob.name not in known:
                    unlink_quietly(blob)

    def _existing(self, sha: str, size: int, meta: ArtifactMeta) -> ArtifactRef | None:
        """For a resumable upload of content this owner already has: the artifact with the
        same name, else a new artifact sharing the stored bytes; `None` if there is none."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM artifacts WHERE sha256 = ? AND owner_agent_id IS ? "
                "AND size_bytes = ? AND (expires_at = 0 OR expires_at > ?)",
                (sha, meta.owner_agent_id, size, time.time()),
            ).fetchall()
            if not rows:
                return None
            for row in rows:
                if not meta.name or row[1] == meta.name:
                    return self._ref(row)
            return self._publish(None, sha, size, meta, None)

    # -- accounting and lifetime --------------------------------------------------------

    def usage(self) -> dict[str, Any]:
        """Bytes used, reserved and allowed, and counts (health, metrics, `doctor`)."""
        with self._lock:
            return {
                "used_bytes": self._used,
                "reserved_bytes": self._reserved,
                "quota_bytes": self.quota_bytes,
                "max_artifact_bytes": self.max_artifact_bytes,
                "artifacts": int(self._one("SELECT count(*) FROM artifacts")),
                "uploads": int(self._one("SELECT count(*) FROM uploads")),
            }

    def close(self) -> None:
        """Close the metadata database. Later calls raise `HostError`."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._db.close()

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"
