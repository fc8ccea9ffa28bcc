"""The PREPARE envelope of the move protocol (network.md §2.2) and the test-only fault hook."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import (
    SerializationError,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("paglets.transfers")

PROTOCOL = 1
ENVELOPE_TYPE = "application/vnd.paglets.envelope"
MSGPACK = "application/msgpack"
COMMIT_BACKOFF = (0.2, 30.0)
# network.md §2.4 says up to 60 s; we cap at 10 s: the GET is cheap, and the cap bounds how
# long a prepared copy waits after its source comes back (the source may have aborted).
STATUS_BACKOFF = (1.0, 10.0)
PREFLIGHT_FRESH = 2.0  # seconds a peer's /health answer is trusted for preflight
STAGED_FILE_TTL = 86400.0  # staged files expire unless a PREPARE claims them


def fault(point: str) -> None:
    """Test-only fault injection: `PAGLETS_FAULT=<point>` kills this process at that step."""
    if os.environ.get("PAGLETS_FAULT") == point:
        log.warning("fault injection: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


class PrepareHeader(msgspec.Struct, kw_only=True):
    """The envelope header of PREPARE (network.md §2.2), checked before the state is used."""

    protocol: int
    transfer_id: str
    kind: str
    agent_id: str
    clone_of: str | None = None
    epoch: int
    agent_class_name: str
    state_class_name: str
    code_version: str
    source: dict[str, Any]
    target: dict[str, Any] = {}
    home: dict[str, Any] = {}
    ticket: dict[str, Any] = {}
    deadline_ms: int
    state_size: int
    state_sha256: str
    state_codec: str = "msgpack"
    registered_files: list[dict[str, Any]] = []
    policy: dict[str, Any] | None = None
    queued_messages: list[dict[str, Any]] = []
    isolation: str = "host"
    metadata: dict[str, Any] = {}
    created_at: float = 0.0


def encode_envelope(header: dict[str, Any], state: bytes) -> tuple[bytes, bytes]:
    """The envelope as two parts to send one after the other: the state is never copied."""
    head = msgspec.msgpack.encode(header)
    return len(head).to_bytes(4, "big") + head, state


def decode_envelope(body: bytes) -> tuple[PrepareHeader, bytes]:
    if len(body) < 4:
        raise SerializationError(
            "envelope too short: expected a 4-byte header length", code="invalid-body"
        )
    size = int.from_bytes(body[:4], "big")
    if size > len(body) - 4:
        raise SerializationError("envelope header length exceeds the body", code="invalid-body")
    try:
        header = msgspec.msgpack.decode(body[4 : 4 + size], type=PrepareHeader)
    except msgspec.ValidationError as exc:
        raise SerializationError(f"envelope header: {exc}", code="invalid-body") from None
    except msgspec.DecodeError as exc:
        raise SerializationError(
            f"envelope header is not MessagePack: {exc}", code="invalid-body"
        ) from None
    state = body[4 + size :]
    if len(state) != header.state_size:
        raise SerializationError(
            f"envelope state is {len(state)} bytes, header says {header.state_size}",
            code="invalid-body",
        )
    if hashlib.sha256(state).hexdigest() != header.state_sha256:
        raise SerializationError(
            "envelope state does not match its sha256", code="checksum-mismatch"
        )
    return header, state


def check_tid(tid: str) -> None:
    if len(tid) != 32 or any(c not in "0123456789abcdef" for c in tid):
        raise SerializationError(
            f"transfer id must be 32 lowercase hex characters, got {tid[:40]!r}",
            code="invalid-body",
        )


def error_body(data: bytes, status: int) -> dict[str, Any]:
    for decode in (msgspec.msgpack.decode, msgspec.json.decode):
        try:
            body = decode(data)
            if isinstance(body, dict):
                return body
        except Exception:
            continue
    return {"error_type": "TransferError", "error": f"HTTP {status}", "code": "target-rejected"}
