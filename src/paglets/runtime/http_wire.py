"""The HTTP API's wire: media types, request bodies, responses and error bodies.

network.md §1.2 and §1.5. Request bodies are JSON or MessagePack decoded straight into
msgspec structs (unknown fields ignored, a wrong type is `400 invalid-body` naming its path);
responses are MessagePack when the caller asks for it, else JSON with the binary tag of
api.md §8.3. Every error answer, whatever raised it, has the one body of §1.5.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any, NoReturn

import msgspec
from aiohttp import web

from paglets.core.errors import (
    AuthenticationError,
    DuplicateAgentError,
    ForbiddenError,
    InvalidAgentError,
    InvalidAgentIdError,
    NotHandledError,
    PagletCrashedError,
    PagletError,
    PagletInactiveError,
    PagletMovedError,
    PagletTimeoutError,
    SerializationError,
    StorageQuotaError,
    TransferError,
    error_to_wire,
    http_status_for,
)
from paglets.serialization import codec

log = logging.getLogger("paglets.http")

__all__ = [
    "BODY_IDLE_SECONDS",
    "JSON",
    "MSGPACK",
    "PICKLE",
    "SERVER_KEY",
    "HttpRefusal",
    "decode_body",
    "error_response",
    "invalid",
    "is_msgpack",
    "media_type_refusal",
    "read_body",
    "refuse",
    "reply",
    "request_id",
    "restore",
    "wants_msgpack",
]

JSON = "application/json"
MSGPACK = "application/msgpack"
PICKLE = "application/x-paglets-pickle"
MSGPACK_TYPES = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})
BODY_TYPES = MSGPACK_TYPES | {JSON}
# Routes mounted from other modules take one more media type each (network.md §1.2).
EXTRA_TYPES: tuple[tuple[str, str], ...] = (
    ("/artifacts", "application/octet-stream"),
    ("/transfers/", "application/vnd.paglets.envelope"),
    # A relay hub passes these on to its node, which checks them against its own routes.
    ("/relay/hosts/", "application/octet-stream"),
    ("/relay/hosts/", "application/vnd.paglets.envelope"),
)
BODY_IDLE_SECONDS = 30.0
# The `HttpServer` serving an app, for handlers that are plain functions.
SERVER_KEY: web.AppKey[Any] = web.AppKey("paglets.server", object)

# Statuses fixed by the code rather than the error type (network.md §1.5's table).
_CODE_STATUS = {
    "auth-required": 401,
    "auth-failed": 401,
    "no-route": 404,
    "artifact-not-found": 404,
    "unknown-transfer": 404,
    "method-not-allowed": 405,
    "legacy-route": 410,
    "body-too-large": 413,
    "state-too-large": 413,
    "pickle-refused": 415,
    "unsupported-media-type": 415,
    "headers-too-large": 431,
    "auth-throttled": 429,
    "rate-limited": 429,
    "relay-queue-full": 429,
    "internal": 500,
    "relay-disconnected": 502,
    "relay-node-offline": 503,
    "draining": 503,
    "too-many-subscribers": 503,
    "stale-epoch": 409,
    "wrong-host": 409,
    "transfer-conflict": 409,
    "incompatible-version": 409,
    "ambiguous-id": 409,
    "upload-offset": 409,
    "idempotency-key-reuse": 409,
    "name-taken": 409,
}

# The code an error gets when whoever raised it set none.
_DEFAULT_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (PagletMovedError, "moved"),
    (InvalidAgentIdError, "bad-agent-id"),
    (AuthenticationError, "auth-failed"),
    (ForbiddenError, "forbidden"),
    (InvalidAgentError, "agent-not-found"),
    (DuplicateAgentError, "agent-exists"),
    (NotHandledError, "not-handled"),
    (PagletTimeoutError, "deadline-exceeded"),
    (StorageQuotaError, "quota-exceeded"),
    (PagletInactiveError, "inactive"),
    (PagletCrashedError, "crashed"),
    (TransferError, "transfer-failed"),
    (SerializationError, "invalid-body"),
)

_HINTS = {
    "auth-required": "send 'Authorization: Bearer <key>' with the mesh key (PAGLETS_API_KEY)",
    "auth-failed": "the key differs from this host's; every host of a mesh needs the same key",
    "auth-throttled": "too many failed key checks from this address; wait for Retry-After",
    "pickle-refused": "pickle is never accepted; send application/json or application/msgpack",
    "unsupported-media-type": "send the body as application/json or application/msgpack",
    "no-route": "see network.md §1.7 and §1.8 for the routes a host serves",
    "bad-agent-id": "agent ids are 1-128 characters from A-Z a-z 0-9 . _ - without '..'",
    "legacy-envelope": "send {agent_class_name, state_class_name, state, init, agent_id}",
    "deadline-exceeded": "raise X-Paglets-Deadline-Ms or make the handler shorter",
    "module-not-allowed": "start the host with --allow-module for the class's package",
}


class HttpRefusal(PagletError):
    """An HTTP-level refusal (bad route, media type, size, query) with its own status."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        error_type: str = "HostError",
        error_module: str = "paglets.core.errors",
        headers: dict[str, str] | None = None,
        detail: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.wire_type = error_type
        self.wire_module = error_module
        self.headers = headers
        self.detail = detail
        self.status = status


def refuse(message: str, *, code: str, error_type: str = "HostError", **kw: Any) -> NoReturn:
    raise HttpRefusal(message, code=code, error_type=error_type, **kw)


# -- request ids -----------------------------------------------------------------------

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(request: web.Request) -> str:
    """The caller's `X-Request-Id` when it is a sane token, else a fresh one."""
    given = request.headers.get("X-Request-Id")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


# -- media types -------------------------------------------------------------------------


def _media_type(header: str) -> str:
    return header.partition(";")[0].strip().lower()


def is_msgpack(request: web.Request) -> bool:
    """Whether the request body is MessagePack (else it is JSON)."""
    ctype = request.headers.get("Content-Type")
    return ctype is not None and _media_type(ctype) in MSGPACK_TYPES


def _has_body(request: web.Request) -> bool:
    length = request.content_length
    return (length is not None and length > 0) or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    ).lower()


def media_type_refusal(request: web.Request) -> HttpRefusal | None:
    """Checked after authentication and before any body byte is read (§1.2)."""
    ctype = request.headers.get("Content-Type")
    if ctype is None:
        return None
    media = _media_type(ctype)
    if media in BODY_TYPES:
        return None
    if media == PICKLE or "pickle" in media:
        return HttpRefusal(
            f"{request.method} {request.path}: pickle bodies ({ctype}) are refused on every "
            "route; nothing was read or unpickled",
            code="pickle-refused",
            error_type="SerializationError",
        )
    if not _has_body(request):
        return None
    path = request.path
    for prefix, extra in EXTRA_TYPES:
        if media == extra and path.startswith(prefix):
            return None
    return HttpRefusal(
        f"{request.method} {path}: unsupported Content-Type {ctype!r}",
        code="unsupported-media-type",
        error_type="SerializationError",
    )


# -- bodies -------------------------------------------------------------------------------


def _too_large(request: web.Request, limit: int, code: str, what: str) -> HttpRefusal:
    return HttpRefusal(
        f"{request.method} {request.path}: the {what} is larger than this host's limit of "
        f"{limit} bytes",
        code=code,
        detail={"limit_bytes": limit},
    )


async def read_body(
    request: web.Request, limit: int, *, code: str = "body-too-large", what: str = "body"
) -> bytes:
    """The request body, at most `limit` bytes: a larger declared Content-Length is refused
    unread, a chunked body is counted while it streams; 30 s without a byte ends the wait."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(request, limit, code, what)
    if not request.body_exists:
        return b""
    content = request.content
    if content.is_eof():  # the whole body already arrived (the common, small case)
        data = content.read_nowait()
        if len(data) > limit:
            raise _too_large(request, limit, code, what)
        return data
    parts: list[bytes] = []
    total = 0
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(BODY_IDLE_SECONDS) as idle:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise _too_large(request, limit, code, what)
                parts.append(chunk)
                idle.reschedule(loop.time() + BODY_IDLE_SECONDS)
    except TimeoutError:
        refuse(
            f"{request.method} {request.path}: no body byte for {BODY_IDLE_SECONDS:g}s",
            code="body-timeout",
        )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _reject_ext(code: int, data: memoryview) -> Any:
    raise ValueError(f"MessagePack extension type {code} is not accepted (only timestamps)")


_decoders: dict[tuple[type, bool], Any] = {}


def _decoder(struct: type, msgpack: bool) -> Any:
    key = (struct, msgpack)
    decoder = _decoders.get(key)
    if decoder is None:
        if msgpack:
            decoder = msgspec.msgpack.Decoder(struct, ext_hook=_reject_ext)
        else:
            decoder = msgspec.json.Decoder(struct)
        _decoders[key] = decoder
    return decoder


_AT_PATH = re.compile(r"^(?P<msg>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)


def invalid(path: str, message: str) -> HttpRefusal:
    return HttpRefusal(f"{path}: {message}", code="invalid-body", error_type="SerializationError")


def decode_body(request: web.Request, data: bytes, struct: type) -> Any:
    """Decode `data` into `struct`; an empty body is `{}`. Errors name the field path
    (`$.message.priority: Expected int, got str`)."""
    msgpack = is_msgpack(request)
    if not data:
        data = b"\x80" if msgpack else b"{}"
    try:
        return _decoder(struct, msgpack).decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT_PATH.match(text)
        if match is not None:
            raise invalid(match["path"], match["msg"].replace("`", "")) from None
        raise invalid("$", text.replace("`", "")) from None
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        kind = "MessagePack" if msgpack else "JSON"
        raise invalid("$", f"malformed {kind} body ({exc})".replace("`", "")) from None


def restore(value: Any, request: web.Request) -> Any:
    """Undo JSON's binary tags in an untyped field (MessagePack carries bytes natively)."""
    if value is None or is_msgpack(request):
        return value
    return codec.restore_json_safe(value)


# -- responses ----------------------------------------------------------------------------


def wants_msgpack(request: web.Request) -> bool:
    accept = request.headers.get("Accept")
    return accept is not None and "msgpack" in accept


def reply(
    request: web.Request,
    body: Any,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """`body` as MessagePack when the caller accepts it, else JSON with binary tags."""
    if wants_msgpack(request):
        data = codec.encode(body, format="msgpack")
        ctype = MSGPACK
    else:
        data = codec.encode(body, format="json")
        ctype = JSON
    return web.Response(body=data, status=status, content_type=ctype, headers=headers)


def _code_of(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    if code:
        return code
    if isinstance(exc, PagletError) and (exc.remote_type or exc.remote_traceback):
        return "handler-error"
    for cls, default in _DEFAULT_CODES:
        if isinstance(exc, cls):
            return default
    return None


def _timeout_outcome(exc: BaseException) -> str:
    text = str(exc)
    if "nothing was done" in text or "not delivered" in text:
        return "not-started"
    if "still running" in text:
        return "running"
    return "unknown"


def error_response(request: web.Request, exc: BaseException, host_name: str) -> web.Response:
    """The §1.5 error body for any exception; non-paglets errors are host bugs (`internal`,
    logged, no traceback on the wire)."""
    headers: dict[str, str] = {}
    detail: dict[str, Any] | None = None
    if isinstance(exc, HttpRefusal):
        wire: dict[str, Any] = {
            "error_type": exc.wire_type,
            "error": str(exc),
            "error_module": exc.wire_module,
            "traceback": None,
            "host_name": host_name,
        }
        code: str | None = exc.code
        if exc.headers:
            headers.update(exc.headers)
        detail = exc.detail
    elif isinstance(exc, PagletError):
        wire = error_to_wire(exc, host_name=host_name, with_traceback=False)
        if wire.get("host_name") is None:
            wire["host_name"] = host_name
        code = _code_of(exc)
        detail = getattr(exc, "detail", None)
        if isinstance(exc, PagletTimeoutError) and not (detail and "outcome" in detail):
            detail = {**(detail or {}), "outcome": _timeout_outcome(exc)}
    else:
        log.error("internal error answering %s %s", request.method, request.path, exc_info=exc)
        wire = {
            "error_type": "HostError",
            "error": f"internal error on host {host_name!r} answering {request.method} "
            f"{request.path}; the host log has the details",
            "error_module": "paglets.core.errors",
            "traceback": None,
            "host_name": host_name,
        }
        code = "internal"
    status = (
        (exc.status if isinstance(exc, HttpRefusal) else None)
        or _CODE_STATUS.get(code or "")
        or (http_status_for(exc) if isinstance(exc, PagletError) else 500)
    )
    if isinstance(exc, PagletMovedError):
        status = 307
        moved = dict(exc.moved)
        wire["moved"] = moved
        target = str(moved.get("host_url") or "").rstrip("/")
        if target:
            headers["Location"] = target + request.rel_url.path_qs
        if moved.get("epoch") is not None:
            headers["X-Paglets-Epoch"] = str(moved["epoch"])
    rid = request_id(request)
    wire["code"] = code
    wire["status"] = status
    wire["request_id"] = rid
    hint = _HINTS.get(code or "")
    if hint:
        wire["hint"] = hint
    if detail:
        wire["detail"] = detail
    headers["X-Request-Id"] = rid
    try:
        return reply(request, wire, status=status, headers=headers)
    except Exception:  # an unencodable detail must not lose the error
        wire.pop("detail", None)
        wire["error"] = str(wire["error"])
        return reply(request, wire, status=status, headers=headers)
