"""The write path of the artifact store: input checks and `ArtifactWriter` (one-shot writes).

Every id, hash and label is checked here before it touches a path or a query; every error
names the value at fault and what is allowed.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from paglets.core.errors import HostError, SerializationError
from paglets.core.ids import validate_agent_id

if TYPE_CHECKING:
    from paglets.artifact_store import ArtifactStore
    from paglets.artifacts import ArtifactRef

__all__ = [
    "CHUNK",
    "RESERVE_STEP",
    "ArtifactMeta",
    "ArtifactWriter",
    "check_hex_id",
    "check_sha256",
    "check_size",
    "mismatch",
    "not_found",
    "unlink_quietly",
]

MiB = 1024 * 1024
CHUNK = MiB  # read/hash/write granularity
RESERVE_STEP = 64 * MiB  # reservation growth for bodies of unknown length
MAX_NAME = 255

_HEX = re.compile(r"[0-9a-f]+")
_SHA = re.compile(r"[0-9a-f]{64}")
_LABEL = re.compile(r"[A-Za-z0-9._+-]{0,32}")


def not_found(what: str) -> HostError:
    return HostError(
        f"no artifact {what!r} on this host (expired, deleted or never stored); "
        "list them with 'paglets artifacts list'",
        code="artifact-not-found",
    )


def mismatch(message: str) -> SerializationError:
    return SerializationError(message, code="checksum-mismatch")


def too_large(size: int, limit: int) -> HostError:
    return HostError(
        f"artifact of {size} bytes exceeds this host's limit of {limit} bytes "
        "(raise it with --artifact-max-size)",
        code="body-too-large",
    )


def is_hex(value: str) -> bool:
    return _HEX.fullmatch(value) is not None


def check_hex_id(value: object, what: str = "artifact id") -> str:
    """A full 32-hex id, lower-cased, or `HostError(code="bad-artifact-id")`."""
    if not isinstance(value, str) or len(value) != 32 or not is_hex(value.lower()):
        raise HostError(f"bad {what} {value!r}: expected 32 hex characters", code="bad-artifact-id")
    return value.lower()


def check_sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA.fullmatch(value.lower()):
        raise SerializationError(
            f"bad sha256 {value!r}: expected 64 hex characters (hashlib.sha256(...).hexdigest())",
            code="invalid-body",
        )
    return value.lower()


def check_size(size: object, limit: int | None) -> int:
    """A declared size: a non-negative int within the per-artifact limit (else 413)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise SerializationError(
            f"bad size_bytes {size!r}: a non-negative int", code="invalid-body"
        )
    if limit is not None and size > limit:
        raise too_large(size, limit)
    return size


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


@dataclass(frozen=True, slots=True)
class ArtifactMeta:
    """What an artifact is besides its bytes. `name=""` becomes `artifact-<id[:12]>`."""

    name: str
    compression: str
    expires_at: float
    owner_agent_id: str | None
    tag: str = ""
    keep_after_owner: bool = False

    @classmethod
    def checked(
        cls,
        name: str | None,
        compression: str | None,
        expires_at: float,
        owner_agent_id: str | None,
        tag: str = "",
        keep_after_owner: bool = False,
    ) -> ArtifactMeta:
        name = name or ""
        if not isinstance(name, str) or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
            raise SerializationError(
                f"bad artifact name {name!r}: use at most {MAX_NAME} printable characters",
                code="invalid-body",
            )
        compression = compression or ""
        if not isinstance(compression, str) or not _LABEL.fullmatch(compression):
            raise SerializationError(
                f"bad compression label {compression!r}: up to 32 of A-Z a-z 0-9 . _ + -",
                code="invalid-body",
            )
        try:
            expires = float(expires_at)
        except (TypeError, ValueError):
            expires = -1.0
        if not math.isfinite(expires) or expires < 0:
            raise SerializationError(
                f"bad expires_at {expires_at!r}: epoch seconds, or 0 for never",
                code="invalid-body",
            )
        if owner_agent_id is not None:
            validate_agent_id(owner_agent_id)
        if not isinstance(tag, str) or len(tag) > MAX_NAME:
            raise SerializationError(f"bad tag {tag!r}: a short string", code="invalid-body")
        return cls(name, compression, expires, owner_agent_id, tag, bool(keep_after_owner))

    def columns(self) -> tuple[str, float, str | None, str, int]:
        """`compression, expires_at, owner_agent_id, tag, keep_after_owner` for SQL."""
        return (
            self.compression,
            self.expires_at,
            self.owner_agent_id,
            self.tag,
            int(self.keep_after_owner),
        )


class ArtifactWriter:
    """A one-shot write: `write()` chunks, then `commit()` (or `abort()`; leaving a `with`
    block without commit aborts). One writer, one thread at a time.

    A declared `size_bytes` was reserved when the writer opened; a body of unknown length
    reserves as it grows (64 MiB steps, or what the quota has left)."""

    __slots__ = (
        "_file",
        "_hasher",
        "_meta",
        "_part",
        "_reserved",
        "_store",
        "done",
        "expected_sha256",
        "expected_size",
        "written",
    )

    def __init__(
        self,
        store: ArtifactStore,
        part: Path,
        meta: ArtifactMeta,
        size_bytes: int | None,
        sha256: str | None,
        reserved: int,
    ) -> None:
        self._store = store
        self._part = part
        self._meta = meta
        self._file: BinaryIO = open(part, "wb")  # noqa: SIM115 - closed by commit/abort
        self._hasher = hashlib.sha256()
        self._reserved = reserved
        self.expected_size = size_bytes
        self.expected_sha256 = sha256
        self.written = 0
        self.done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        total = self.written + len(data)
        if self.expected_size is not None and total > self.expected_size:
            raise mismatch(
                f"the body is longer than the declared {self.expected_size} bytes; nothing "
                "was stored"
            )
        if total > self._reserved:
            limit = self._store.max_artifact_bytes
            if limit is not None and total > limit:
                raise too_large(total, limit)
            cap = None if limit is None else limit - self._reserved
            self._reserved += self._store._reserve(
                total - self._reserved, prefer=RESERVE_STEP, cap=cap
            )
        self._hasher.update(data)
        self._file.write(data)
        self.written = total

    def commit(self) -> ArtifactRef:
        """Check size and hash, make the bytes durable (fsync) and publish the artifact."""
        if self.done:
            raise HostError("this artifact writer was already committed or aborted")
        try:
            if self.expected_size is not None and self.written != self.expected_size:
                raise mismatch(
                    f"received {self.written} bytes, {self.expected_size} were declared; "
                    "nothing was stored"
                )
            digest = self._hasher.hexdigest()
            if self.expected_sha256 is not None and digest != self.expected_sha256:
                raise mismatch(
                    f"sha256 of the received bytes is {digest}, not the declared "
                    f"{self.expected_sha256}; nothing was stored"
                )
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            ref = self._store._publish(
                self._part, digest, self.written, self._meta, None, release=self._reserved
            )
        except BaseException:
            self.abort()
            raise
        self.done = True
        self._store._finish_writer(self._part, 0)  # _publish released the reservation
        return ref

    def abort(self) -> None:
        """Drop the `.part` file and release the reservation (idempotent)."""
        if self.done:
            return
        self.done = True
        self._file.close()
        unlink_quietly(self._part)
        self._store._finish_writer(self._part, self._reserved)

    def __enter__(self) -> ArtifactWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()
