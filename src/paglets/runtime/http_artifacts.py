"""HTTP routes of the artifact store (network.md §1.7 and §4), mounted by `HttpServer`.

Bodies stream in both directions in 1 MiB chunks: an upload is read from the socket while
the previous chunk is hashed and written on the worker pool, a download reads the next chunk
while the current one is sent, so no route ever holds a whole artifact in memory and no file
or SQLite call runs on the event loop. Errors are raised and become the §1.5 body in the
server's guard; artifact ids may be unique prefixes of at least 8 hex characters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from paglets.artifact_writes import CHUNK
from paglets.artifacts import ArtifactRef, safe_file_name
from paglets.core.errors import HostError
from paglets.runtime.http_wire import (
    BODY_IDLE_SECONDS,
    SERVER_KEY,
    HttpRefusal,
    decode_body,
    read_body,
    refuse,
    reply,
)

if TYPE_CHECKING:
    from paglets.artifact_store import ArtifactStore
    from paglets.runtime.host import Host

__all__ = ["artifact_routes"]

CONTROL_BODY_BYTES = 1024 * 1024
PAGE_LIMIT = 1000  # most artifacts per page when the caller passes `limit`
UNPAGED_LIMIT = 10_000  # most artifacts for callers that do not page (paglets 2.0)

# Codes whose status the server's table does not (yet) fix.
_STATUS = {"unknown-upload": 404}


class UploadBody(msgspec.Struct):
    """`POST /artifacts/uploads`: what the resumable upload will be."""

    size_bytes: int
    sha256: str
    name: str = ""
    owner_agent_id: str | None = None
    expires_at: float = 0.0
    compression: str = ""
    tag: str = ""
    keep_after_owner: bool = False


def artifact_routes(host: Host) -> list[web.RouteDef]:
    api = _ArtifactApi(host)
    return [
        web.get("/artifacts", api.list),
        web.post("/artifacts", api.upload),
        web.post("/artifacts/uploads", api.create_upload),
        web.get("/artifacts/uploads/{upload_id}", api.upload_status),
        web.put("/artifacts/uploads/{upload_id}", api.append_upload),
        web.post("/artifacts/uploads/{upload_id}/complete", api.complete_upload),
        web.delete("/artifacts/uploads/{upload_id}", api.drop_upload),
        web.get("/artifacts/{artifact_id}/metadata", api.metadata),
        web.get("/artifacts/{artifact_id}", api.download),
        web.delete("/artifacts/{artifact_id}", api.delete),
    ]


# -- query parsing ------------------------------------------------------------------------


def _bad_query(message: str) -> HttpRefusal:
    return HttpRefusal(message, code="bad-query", error_type="SerializationError")


def _float(query: Any, name: str, default: float = 0.0) -> float:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise _bad_query(f"?{name}={raw!r} is not a number") from None


def _int(query: Any, name: str, default: int | None = None) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_query(f"?{name}={raw!r} is not an integer") from None
    if value < 0:
        raise _bad_query(f"?{name}={raw!r} must not be negative")
    return value


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """`(start, end)` (end exclusive) of a single `bytes=` range, `None` to ignore the header
    (malformed or several ranges: RFC 9110 allows answering 200 with everything), or raises
    416 when it starts past the end."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:
            suffix = int(last)
            start, end = max(0, size - suffix), size
            if suffix <= 0 or size == 0:
                start = size
        else:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
            if last and int(last) < start:
                return None
    except ValueError:
        return None
    if start >= size:
        raise HttpRefusal(
            f"range {header!r} starts at or past the end of the {size}-byte artifact",
            code="range-not-satisfiable",
            status=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


# -- the handlers -------------------------------------------------------------------------


class _ArtifactApi:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._opened: ArtifactStore | None = None
        self._open_lock = threading.Lock()

    async def _run(self, request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` off the event loop: on the host's worker pool when the host's server
        runs this app, else the loop's default executor."""
        server = request.app.get(SERVER_KEY)
        try:
            if server is not None:
                return await server.run_blocking(fn, *args)
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        except HostError as exc:
            status = _STATUS.get(exc.code or "")
            if status is None:
                raise
            raise HttpRefusal(
                str(exc), code=exc.code or "", status=status, detail=getattr(exc, "detail", None)
            ) from None

    def _wire(self, ref: ArtifactRef) -> dict[str, Any]:
        """The ref as this host publishes it (its URL, name and id, whatever the store has)."""
        wire = ref.to_wire()
        wire["host_url"] = self.host.address
        wire["host_name"] = self.host.name
        server = getattr(self.host, "http", None)
        wire["host_id"] = getattr(server, "host_id", None) or getattr(self.host, "host_id", None)
        return wire

    def _store(self) -> ArtifactStore:
        """The host's store; the first call opens its database, so it runs through `_run`,
        once even when the first requests race."""
        store = self._opened
        if store is None:
            with self._open_lock:
                store = self._opened
                if store is None:
                    store = self._opened = self.host.artifacts
        return store

    async def _pump(self, request: web.Request, write: Callable[[bytearray], Any]) -> None:
        """Stream the body into `write` in 1 MiB chunks; the next chunk is read from the
        socket while the previous one is written. 30 s without a byte ends the upload."""
        content = request.content
        loop = asyncio.get_running_loop()
        buf = bytearray()
        pending: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout(BODY_IDLE_SECONDS) as idle:
                while data := await content.readany():
                    buf += data
                    idle.reschedule(loop.time() + BODY_IDLE_SECONDS)
                    if len(buf) >= CHUNK:
                        if pending is not None:
                            await pending
                        pending = asyncio.ensure_future(self._run(request, write, buf))
                        buf = bytearray()
                if pending is not None:
                    await pending
                    pending = None
                if buf:
                    await self._run(request, write, buf)
        except TimeoutError:
            refuse(
                f"{request.method} {request.path}: no body byte for {BODY_IDLE_SECONDS:g}s; "
                "the upload was dropped (resumable uploads keep what arrived)",
                code="body-timeout",
            )
        finally:
            if pending is not None:  # never abort while a chunk is still being written
                with contextlib.suppress(BaseException):
                    await pending

    # -- artifacts ----------------------------------------------------------------------

    async def list(self, request: web.Request) -> web.Response:
        q = request.query
        paged = q.get("limit") not in (None, "")
        limit = min(_int(q, "limit", PAGE_LIMIT) or PAGE_LIMIT, PAGE_LIMIT)
        if not paged:
            limit = UNPAGED_LIMIT
        cursor = q.get("cursor") or None
        store = await self._run(request, self._store)
        refs = await self._run(
            request,
            functools.partial(
                store.list,
                q.get("owner_agent_id") or None,
                sha256=q.get("sha256") or None,
                after=cursor,
                limit=limit + 1,
            ),
        )
        more = len(refs) > limit
        refs = refs[:limit]
        return reply(
            request,
            {
                "artifacts": [self._wire(r) for r in refs],
                "next_cursor": refs[-1].artifact_id if more and paged else None,
                "truncated": more and not paged,
            },
        )

    async def upload(self, request: web.Request) -> web.Response:
        """`POST /artifacts?owner_agent_id&name&compression&expires_at&sha256` (bytes)."""
        q = request.query
        store = await self._run(request, self._store)
        writer = await self._run(
            request,
            functools.partial(
                store.open_writer,
                size_bytes=request.content_length,
                sha256=q.get("sha256") or None,
                name=q.get("name") or None,
                owner_agent_id=q.get("owner_agent_id") or None,
                compression=q.get("compression", ""),
                expires_at=_float(q, "expires_at"),
                tag=q.get("tag", ""),
                keep_after_owner=q.get("keep_after_owner") in ("1", "true"),
            ),
        )
        try:
            await self._pump(request, writer.write)
            ref = await self._run(request, writer.commit)
        except BaseException:
            writer.abort()  # idempotent, cheap: close and unlink the .part
            raise
        return reply(request, {"artifact": self._wire(ref)})

    async def metadata(self, request: web.Request) -> web.Response:
        store = await self._run(request, self._store)
        ref = await self._run(request, store.get, request.match_info["artifact_id"])
        return reply(request, {"artifact": self._wire(ref)})

    async def delete(self, request: web.Request) -> web.Response:
        store = await self._run(request, self._store)
        artifact_id = await self._run(request, store.resolve, request.match_info["artifact_id"])
        await self._run(request, store.delete, artifact_id)
        return reply(request, {"ok": True, "artifact_id": artifact_id})

    async def download(self, request: web.Request) -> web.StreamResponse:
        """The bytes; `Range: bytes=N-` (and `N-M`, `-N`) gets `206` unless `If-Range`
        names another version. `ETag` is `"sha256-<hex>"`, so a resumed download can never
        splice two different contents."""
        store = await self._run(request, self._store)
        ref, f = await self._run(request, store.open_blob, request.match_info["artifact_id"])
        pending: asyncio.Future[Any] | None = None
        try:
            size = ref.size_bytes
            etag = f'"sha256-{ref.sha256}"'
            start, end, status = 0, size, 200
            header = request.headers.get("Range")
            if_range = request.headers.get("If-Range")
            if header and (if_range is None or if_range.strip() == etag):
                parsed = _parse_range(header, size)
                if parsed is not None:
                    (start, end), status = parsed, 206
            filename = quote(safe_file_name(ref.name, ref.artifact_id))
            headers = {
                "ETag": etag,
                "X-Paglets-Artifact-Sha256": ref.sha256,
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
            }
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            response = web.StreamResponse(status=status, headers=headers)
            response.content_length = end - start
            await response.prepare(request)
            remaining = end - start
            if request.method != "HEAD" and remaining > 0:
                if start:
                    await self._run(request, f.seek, start)
                nxt = pending = asyncio.ensure_future(
                    self._run(request, f.read, min(CHUNK, remaining))
                )
                while remaining > 0:
                    data = await nxt
                    pending = None
                    if not data:
                        raise HostError(
                            f"artifact {ref.artifact_id} is shorter on disk than its "
                            f"{size} bytes (disk corruption?)",
                            code="internal",
                        )
                    remaining -= len(data)
                    if remaining > 0:
                        nxt = pending = asyncio.ensure_future(
                            self._run(request, f.read, min(CHUNK, remaining))
                        )
                    await response.write(data)
            await response.write_eof()
            return response
        finally:
            if pending is not None:  # a read in flight must end before the file closes
                with contextlib.suppress(BaseException):
                    await pending
            f.close()

    # -- resumable uploads --------------------------------------------------------------

    async def create_upload(self, request: web.Request) -> web.Response:
        body: UploadBody = decode_body(
            request, await read_body(request, CONTROL_BODY_BYTES), UploadBody
        )
        store = await self._run(request, self._store)
        result = await self._run(
            request,
            functools.partial(
                store.uploads.create,
                size_bytes=body.size_bytes,
                sha256=body.sha256,
                name=body.name or None,
                owner_agent_id=body.owner_agent_id,
                compression=body.compression,
                expires_at=body.expires_at,
                tag=body.tag,
                keep_after_owner=body.keep_after_owner,
            ),
        )
        if isinstance(result, ArtifactRef):
            return reply(request, {"artifact": self._wire(result)})
        return reply(request, result.to_wire())

    async def upload_status(self, request: web.Request) -> web.Response:
        store = await self._run(request, self._store)
        status = await self._run(request, store.uploads.status, request.match_info["upload_id"])
        return reply(request, status.to_wire())

    async def append_upload(self, request: web.Request) -> web.Response:
        """`PUT /artifacts/uploads/{uid}?offset=N`: append the body at N (the current end)."""
        offset = _int(request.query, "offset")
        if offset is None:
            raise _bad_query("PUT needs ?offset=N, the upload's current offset")
        store = await self._run(request, self._store)
        appender = await self._run(
            request, store.uploads.append, request.match_info["upload_id"], offset
        )
        try:
            length = request.content_length
            if length is not None and offset + length > appender.size_bytes:
                raise HostError(
                    f"upload {appender.upload_id} declared {appender.size_bytes} bytes; "
                    f"{length} bytes at offset {offset} go past that",
                    code="body-too-large",
                )
            await self._pump(request, appender.write)
        finally:
            new_offset = await self._run(request, appender.close)
        return reply(request, {"offset": new_offset, "size_bytes": appender.size_bytes})

    async def complete_upload(self, request: web.Request) -> web.Response:
        store = await self._run(request, self._store)
        ref = await self._run(request, store.uploads.complete, request.match_info["upload_id"])
        return reply(request, {"artifact": self._wire(ref)})

    async def drop_upload(self, request: web.Request) -> web.Response:
        store = await self._run(request, self._store)
        uid = request.match_info["upload_id"]
        if not await self._run(request, store.uploads.drop, uid):
            raise HttpRefusal(
                f"no upload {uid!r} on this host (completed, dropped or expired)",
                code="unknown-upload",
                status=404,
            )
        return reply(request, {"ok": True})
