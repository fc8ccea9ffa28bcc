"""HTTP on either side of a relay link (network.md §3.8): which headers cross it, which
delivery id a request gets, and how a `req` is carried out as a real HTTP request.

Credentials never cross the link: the hub checked the caller's key (or certificate) before
anything was relayed, and whoever finally makes the HTTP request (the node on its own
loopback port, the hub towards another host) adds its own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp
import msgspec

from paglets.remote.relay_frames import CHUNK_BYTES, Req
from paglets.runtime.relay_link import Incoming

__all__ = [
    "MUTATING",
    "delivery_id_for",
    "error_body",
    "perform",
    "request_headers",
    "response_headers",
]

MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
MAX_KEY_LENGTH = 128
# Hop-by-hop headers, lengths the receiving side recomputes, and credentials.
_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
        "cookie",
        "accept-encoding",
        "x-paglets-csrf",
    }
)
_DROPPED_BACK = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "set-cookie",
        "date",
        "server",
    }
)
_TRANSFER_PHASE = re.compile(r"^/transfers/([0-9A-Za-z]{1,64})/(prepare|commit|abort)$")
_MESSAGES = re.compile(r"^/agents/[^/]+/messages$")


def request_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in headers if k.lower() not in _DROPPED]


def response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in headers if k.lower() not in _DROPPED_BACK]


class _MessageId(msgspec.Struct):
    message_id: str | None = None


class _MessageBody(msgspec.Struct):
    message: _MessageId | None = None


def _message_id(body: bytes, content_type: str) -> str | None:
    try:
        if "msgpack" in content_type:
            decoded = msgspec.msgpack.decode(body, type=_MessageBody)
        else:
            decoded = msgspec.json.decode(body, type=_MessageBody)
    except (msgspec.MsgspecError, ValueError):
        return None  # the node answers the bad body; a fresh id is as good as any
    message = decoded.message
    return message.message_id if message is not None and message.message_id else None


def delivery_id_for(
    method: str, path: str, headers: Mapping[str, str], body: bytes | None
) -> tuple[str, bool]:
    """(delivery id, keyed): the request's `Idempotency-Key`, else `transfer_id:phase`,
    else the message's `message_id`, else a fresh id (`keyed` False: no retry can carry it)."""
    key = headers.get("Idempotency-Key")
    if key and len(key) <= MAX_KEY_LENGTH:
        return key, True
    if method == "POST":
        match = _TRANSFER_PHASE.match(path)
        if match is not None:
            return f"{match[1]}:{match[2]}", True
        if body and _MESSAGES.match(path):
            found = _message_id(body, headers.get("Content-Type", ""))
            if found:
                return found, True
    return uuid.uuid4().hex, False


def error_body(message: str, *, code: str, status: int, error_type: str, host_name: str) -> bytes:
    """A §1.5 error body (JSON), for answers made on the link rather than by a route."""
    return msgspec.json.encode(
        {
            "error_type": error_type,
            "error": message,
            "error_module": "paglets.core.errors",
            "traceback": None,
            "host_name": host_name,
            "code": code,
            "status": status,
            "request_id": uuid.uuid4().hex,
        }
    )


async def _streamed(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for data in response.content.iter_chunked(CHUNK_BYTES):
            yield data
    finally:
        response.release()


async def perform(
    session: aiohttp.ClientSession,
    base_url: str,
    req: Req,
    body: Incoming | None,
    extra_headers: Mapping[str, str],
    *,
    timeout: float | None,
    whole: bool = False,
    ssl: Any = True,
) -> tuple[int, list[tuple[str, str]], bytes | AsyncIterator[bytes]]:
    """Make `req` as an HTTP request to `base_url`; its status, headers and body (bytes, or
    an iterator of chunks for a large or open-ended answer unless `whole`)."""
    url = base_url.rstrip("/") + req.path
    if req.query:
        url = f"{url}?{req.query}"
    headers: list[tuple[str, str]] = list(req.headers)
    headers.extend(extra_headers.items())
    data: Any = body.chunks() if body is not None else req.body
    response = await session.request(
        req.method,
        url,
        data=data,
        headers=headers,
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=timeout),
        ssl=ssl,
    )
    head = response_headers(response.headers.items())
    length = response.content_length
    small = length is not None and length <= CHUNK_BYTES
    if whole or small or req.method == "HEAD" or response.status in (204, 304):
        try:
            return response.status, head, await response.read()
        finally:
            response.release()
    return response.status, head, _streamed(response)
