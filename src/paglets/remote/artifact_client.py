"""Artifact transfers through a `HostClient` (network.md §4): upload, download, delete, list.

Built on the client's low-level `request(method, url, *, body, content_type, accept,
headers, timeout) -> (status, headers, bytes)`. That call answers with whole bodies, so
large transfers go in 8 MiB parts: uploads above 64 MiB use the resumable protocol (one PUT
per part, resumed from the host's offset after a failure), downloads fetch ranges
(`Range` + `If-Range: "sha256-…"`) into a hidden `.part` file next to the target, which a
later call resumes. Memory stays bounded by one part; a download is renamed into place only
after its size and SHA-256 match the ref.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from paglets.artifacts import ArtifactRef, safe_file_name
from paglets.core.errors import (
    HostError,
    PagletError,
    RemoteHostError,
    SerializationError,
    error_from_wire,
)

__all__ = [
    "RESUMABLE_ABOVE",
    "artifact_info",
    "delete_artifact",
    "download_artifact",
    "list_artifacts",
    "part_path",
    "upload_artifact",
]

MiB = 1024 * 1024
RESUMABLE_ABOVE = 64 * MiB  # network.md §4: bigger files use the resumable protocol
PART_BYTES = 8 * MiB  # one PUT or one ranged GET
RETRIES = 5  # transport failures in a row before a transfer gives up (its .part is kept)
JSON = "application/json"
OCTET = "application/octet-stream"

Progress = Callable[[int, int], Any]  # (bytes done, bytes total)


# -- plumbing -----------------------------------------------------------------------------


def _timeout_for(nbytes: int) -> float | None:
    """Client default for small bodies; big ones get 30 s plus 1 s per 4 MiB."""
    return None if nbytes < MiB else 30.0 + nbytes / (4 * MiB)


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name) if hasattr(headers, "get") else None
    if value is not None:
        return str(value)
    lowered = name.lower()
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if str(key).lower() == lowered:
            return str(value)
    return None


def _error(method: str, url: str, status: int, headers: Any, body: bytes) -> PagletError:
    """The §1.5 error body as the paglets error it names (with `detail` and `status`)."""
    try:
        wire = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        wire = None
    if isinstance(wire, dict) and wire.get("error_type"):
        exc = error_from_wire(wire)
        exc.detail = wire.get("detail")  # type: ignore[attr-defined]
        exc.hint = wire.get("hint")  # type: ignore[attr-defined]
    else:
        text = body[:200].decode("utf-8", "replace") if body else ""
        exc = RemoteHostError(f"{method} {url} answered HTTP {status}: {text}".rstrip(": "))
    exc.status = status  # type: ignore[attr-defined]
    return exc


def _request(
    client: Any,
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    content_type: str = JSON,
    accept: str = JSON,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> tuple[int, Any, bytes]:
    status, rheaders, data = client.request(
        method,
        url,
        body=body,
        content_type=content_type,
        accept=accept,
        headers=headers,
        timeout=timeout,
    )
    if status >= 400:
        # HostClient knows how to word a 401 (which key source to fix); else our own.
        build: Any = getattr(client, "_error", None)
        exc: PagletError = (
            build(status, rheaders, data, method, url)
            if build is not None
            else _error(method, url, status, rheaders, data)
        )
        exc.status = status  # type: ignore[attr-defined]
        raise exc
    return status, rheaders, data


def _json(client: Any, method: str, url: str, payload: Any = None, **kw: Any) -> dict[str, Any]:
    body = None if payload is None else msgspec.json.encode(payload)
    _, _, data = _request(client, method, url, body=body, **kw)
    return msgspec.json.decode(data) if data else {}


def _transient(exc: BaseException) -> bool:
    """A failure worth retrying: the host was unreachable or answered 5xx/timeout."""
    if not isinstance(exc, RemoteHostError):
        return False
    status = getattr(exc, "status", None)
    return status is None or status >= 500


def _base(host_url: str) -> str:
    if not isinstance(host_url, str) or "://" not in host_url:
        raise HostError(f"expected a host URL such as http://127.0.0.1:8765, got {host_url!r}")
    return host_url.rstrip("/")


def _as_ref(artifact: ArtifactRef | dict[str, Any]) -> ArtifactRef:
    if isinstance(artifact, ArtifactRef):
        return artifact
    if isinstance(artifact, dict):
        return ArtifactRef.from_wire(artifact)
    raise TypeError(f"expected an ArtifactRef or its wire dict, got {type(artifact).__name__}")


def _chunks(f: Any, start: int, end: int) -> Iterator[bytes]:
    f.seek(start)
    while start < end and (data := f.read(min(MiB, end - start))):
        start += len(data)
        yield data


def _hash_file(path: Path, progress: Progress | None = None) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for data in _chunks(f, 0, os.fstat(f.fileno()).st_size):
            hasher.update(data)
            size += len(data)
    return size, hasher.hexdigest()


# -- public functions ---------------------------------------------------------------------


def upload_artifact(
    client: Any,
    host_url: str,
    path: str | os.PathLike[str],
    *,
    owner_agent_id: str | None = None,
    name: str | None = None,
    compression: str = "",
    expires_at: float = 0.0,
    progress: Progress | None = None,
) -> ArtifactRef:
    """Store the file at `path` on `host_url` and return its ref. Files above 64 MiB go
    through the resumable protocol and survive transport failures mid-way."""
    src = Path(path)
    size = src.stat().st_size
    meta = {
        "name": name or safe_file_name(src.name, "artifact"),
        "owner_agent_id": owner_agent_id,
        "compression": compression,
        "expires_at": expires_at,
    }
    if size > RESUMABLE_ABOVE:
        return _upload_resumable(client, _base(host_url), src, meta, progress)
    data = src.read_bytes()  # at most 64 MiB
    query = {k: v for k, v in meta.items() if v not in (None, "", 0, 0.0)}
    query["sha256"] = hashlib.sha256(data).hexdigest()
    url = f"{_base(host_url)}/artifacts?{urlencode(query)}"
    _, _, body = _request(
        client, "POST", url, body=data, content_type=OCTET, timeout=_timeout_for(len(data))
    )
    if progress is not None:
        progress(len(data), len(data))
    return ArtifactRef.from_wire(msgspec.json.decode(body)["artifact"])


def _upload_resumable(
    client: Any, base: str, src: Path, meta: dict[str, Any], progress: Progress | None
) -> ArtifactRef:
    size, sha = _hash_file(src)
    answer = _json(
        client, "POST", f"{base}/artifacts/uploads", {**meta, "size_bytes": size, "sha256": sha}
    )
    if "artifact" in answer:
        if progress is not None:
            progress(size, size)
        return ArtifactRef.from_wire(answer["artifact"])
    uid = answer["upload_id"]
    offset = int(answer.get("offset", 0))
    status_url = f"{base}/artifacts/uploads/{uid}"
    failures = 0
    try:
        with open(src, "rb") as f:
            while offset < size:
                if progress is not None:
                    progress(offset, size)
                f.seek(offset)
                part = f.read(min(PART_BYTES, size - offset))
                try:
                    _, _, body = _request(
                        client,
                        "PUT",
                        f"{status_url}?offset={offset}",
                        body=part,
                        content_type=OCTET,
                        timeout=_timeout_for(len(part)),
                    )
                    offset = int(msgspec.json.decode(body)["offset"])
                    failures = 0
                except PagletError as exc:
                    if exc.code != "upload-offset" and not _transient(exc):
                        raise
                    failures += 1
                    if failures > RETRIES:
                        raise
                    detail = getattr(exc, "detail", None) or {}
                    offset = int(
                        detail.get("offset", -1)
                        if "offset" in detail
                        else _json(client, "GET", status_url)["offset"]
                    )
        if progress is not None:
            progress(size, size)
        answer = _json(client, "POST", f"{status_url}/complete", timeout=_timeout_for(size))
        return ArtifactRef.from_wire(answer["artifact"])
    except PagletError as exc:
        if not _transient(exc):  # a refused upload is dropped; a broken link keeps it
            try:
                client.request("DELETE", status_url, accept=JSON, timeout=None)
            except Exception:
                pass
        raise


def part_path(target: Path, ref: ArtifactRef) -> Path:
    """The hidden file a download of `ref` to `target` writes before its final rename.
    Named by the content's hash, so a resume never splices two different contents."""
    return target.parent / f".{target.name}.{ref.sha256[:16]}.part"


def download_artifact(
    client: Any,
    ref: ArtifactRef | dict[str, Any],
    target: str | os.PathLike[str],
    *,
    move: bool = False,
    resume: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Fetch the artifact to `target` (a file, or a directory to put it in under its
    sanitised name); resumes a `.part` left by an earlier attempt unless `resume=False`.
    Size and SHA-256 are checked before the atomic rename; `move=True` then deletes the
    artifact on its host. Returns the final path."""
    ref = _as_ref(ref)
    dest = Path(target)
    if dest.is_dir():
        dest = dest / safe_file_name(ref.name, ref.artifact_id)
    part = part_path(dest, ref)
    url = f"{_base(ref.host_url)}/artifacts/{quote(ref.artifact_id)}"
    etag = f'"sha256-{ref.sha256}"'
    size = ref.size_bytes
    hasher = hashlib.sha256()
    offset = 0
    if resume and part.exists():
        with open(part, "rb") as f:
            for data in _chunks(f, 0, size):
                hasher.update(data)
                offset += len(data)
    resumed = offset > 0
    with open(part, "r+b" if offset else "wb") as out:
        out.truncate(offset)
        out.seek(offset)
        failures = 0
        ask_empty = size == 0  # an empty artifact is still fetched once: does it exist?
        while offset < size or ask_empty:
            ask_empty = False
            if progress is not None:
                progress(offset, size)
            end = min(size, offset + PART_BYTES)
            headers = {"Range": f"bytes={offset}-{end - 1}", "If-Range": etag} if size else {}
            try:
                status, rheaders, body = _request(
                    client,
                    "GET",
                    url,
                    accept=f"{OCTET}, {JSON}",
                    headers=headers,
                    timeout=_timeout_for(end - offset),
                )
            except PagletError as exc:
                failures += 1
                if not _transient(exc) or failures > RETRIES:
                    raise
                continue
            failures = 0
            if status == 206:
                crange = _header(rheaders, "Content-Range") or ""
                if not crange.startswith(f"bytes {offset}-"):
                    raise HostError(
                        f"{url} answered range {crange!r} to a request for bytes {offset}-"
                    )
            else:  # the whole artifact: start over
                hasher, offset = hashlib.sha256(), 0
                out.seek(0)
                out.truncate()
            if not body and offset < size:
                raise HostError(f"{url} sent no bytes at offset {offset} of {size}")
            out.write(body)
            hasher.update(body)
            offset += len(body)
            if offset > size:
                break
        out.flush()
        os.fsync(out.fileno())
    digest = hasher.hexdigest()
    if offset != size or digest != ref.sha256:
        part.unlink(missing_ok=True)
        if resumed:  # the old .part may have been damaged: one fresh attempt
            return download_artifact(client, ref, dest, move=move, resume=False, progress=progress)
        raise SerializationError(
            f"download of artifact {ref.artifact_id} from {ref.host_url} got {offset} bytes "
            f"with sha256 {digest}; expected {size} bytes with {ref.sha256}. Nothing was "
            "written; try again",
            code="checksum-mismatch",
        )
    os.replace(part, dest)
    if progress is not None:
        progress(size, size)
    if move:
        delete_artifact(client, ref)
    return dest


def delete_artifact(client: Any, ref: ArtifactRef | dict[str, Any]) -> bool:
    """Delete the artifact on its host; `False` if it was already gone."""
    ref = _as_ref(ref)
    try:
        _json(client, "DELETE", f"{_base(ref.host_url)}/artifacts/{quote(ref.artifact_id)}")
    except PagletError as exc:
        if exc.code == "artifact-not-found":
            return False
        raise
    return True


def artifact_info(client: Any, host_url: str, artifact_id: str) -> ArtifactRef:
    """The ref of an artifact on `host_url`; `artifact_id` may be a unique prefix (≥ 8 hex)."""
    answer = _json(client, "GET", f"{_base(host_url)}/artifacts/{quote(artifact_id)}/metadata")
    return ArtifactRef.from_wire(answer["artifact"])


def list_artifacts(
    client: Any, host_url: str, *, owner_agent_id: str | None = None, sha256: str | None = None
) -> list[ArtifactRef]:
    """Every live artifact on `host_url` (optionally of one owner or content), page by page."""
    refs: list[ArtifactRef] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 1000}
        if owner_agent_id:
            query["owner_agent_id"] = owner_agent_id
        if sha256:
            query["sha256"] = sha256
        if cursor:
            query["cursor"] = cursor
        answer = _json(client, "GET", f"{_base(host_url)}/artifacts?{urlencode(query)}")
        refs.extend(ArtifactRef.from_wire(w) for w in answer.get("artifacts", ()))
        cursor = answer.get("next_cursor")
        if not cursor:
            return refs
