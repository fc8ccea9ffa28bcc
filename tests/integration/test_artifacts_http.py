"""Artifact routes (network.md §1.7, §4) on a real host, through the real `HostClient` and
`paglets.remote.artifact_client`: one-shot and resumable uploads, ranged and resumed
downloads, prefixes, limits, and the §1.5 error bodies."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest

import paglets.artifact_store as artifact_store_module
import paglets.remote.artifact_client as ac
from paglets import Host
from paglets.artifacts import ArtifactRef
from paglets.core.errors import HostError, RemoteHostError, SerializationError
from paglets.remote.client import HostClient

KiB = 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A directory of its own for the test's files (the host lives in tmp_path too)."""
    path = tmp_path / "files"
    path.mkdir()
    return path


@pytest.fixture
def client() -> Iterator[HostClient]:
    c = HostClient(timeout=30)
    yield c
    c.close()


class Recording:
    """Passes every exchange to the real client and remembers it; can fail chosen calls
    once, as a dropped connection would."""

    def __init__(self, client: HostClient, fail: Callable[[str, str, int], bool] | None = None):
        self.client = client
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.fail = fail

    def request(self, method: str, url: str, **kw: Any) -> tuple[int, Any, bytes]:
        self.calls.append((method, url, dict(kw.get("headers") or {})))
        if self.fail is not None and self.fail(method, url, len(self.calls)):
            raise RemoteHostError(f"could not reach {url}: connection reset (test)")
        return self.client.request(method, url, **kw)


def raw(client: HostClient, method: str, url: str, **kw: Any) -> tuple[int, Any, bytes]:
    kw.setdefault("accept", "application/json")
    return client.request(method, url, **kw)


def error_body(status_headers_body: tuple[int, Any, bytes]) -> dict[str, Any]:
    status, _, body = status_headers_body
    wire = json.loads(body)
    assert wire["status"] == status
    assert {"error_type", "error", "error_module", "traceback", "host_name", "code"} <= set(wire)
    assert wire["request_id"]
    return wire


def spool_is_empty(host: Host) -> bool:
    root = host.artifacts.root
    return not any((root / "tmp").iterdir()) and not any((root / "uploads").iterdir())


# -- one-shot uploads and downloads -----------------------------------------------------------


def test_upload_inspect_download_delete(host: Host, client: HostClient, files: Path) -> None:
    src = files / "report.csv"
    data = payload(3 * 1024 * KiB + 17)  # several 1 MiB chunks and a tail
    src.write_bytes(data)
    ref = ac.upload_artifact(client, host.address, src, owner_agent_id="job-7", compression="")
    assert (ref.name, ref.size_bytes, ref.sha256) == ("report.csv", len(data), sha(data))
    assert (ref.host_url, ref.host_name) == (host.address, host.name)
    assert ref.host_id and len(ref.host_id) == 32
    assert host.artifacts.get(ref.artifact_id).sha256 == ref.sha256

    assert ac.artifact_info(client, host.address, ref.artifact_id[:8]) == ref
    assert ac.list_artifacts(client, host.address) == [ref]
    assert ac.list_artifacts(client, host.address, owner_agent_id="job-7") == [ref]
    assert ac.list_artifacts(client, host.address, owner_agent_id="other") == []

    out = ac.download_artifact(client, ref, files / "copy.csv")
    assert out.read_bytes() == data
    assert sorted(p.name for p in files.iterdir()) == ["copy.csv", "report.csv"]

    assert ac.delete_artifact(client, ref) is True
    assert ac.delete_artifact(client, ref) is False
    with pytest.raises(HostError) as info:
        ac.artifact_info(client, host.address, ref.artifact_id)
    assert info.value.code == "artifact-not-found"
    assert spool_is_empty(host)


def test_download_into_a_directory_and_move(host: Host, client: HostClient, files: Path) -> None:
    ref = host.artifacts.put_bytes(b"moved bytes", name="../../evil/name.txt")
    ref = ac.artifact_info(client, host.address, ref.artifact_id)
    out = ac.download_artifact(client, ref, files, move=True)
    assert out == files / "name.txt"  # the remote name is a label, never a path
    assert out.read_bytes() == b"moved bytes"
    assert host.artifacts.list() == []


def test_empty_artifact(host: Host, client: HostClient, files: Path) -> None:
    src = files / "empty"
    src.write_bytes(b"")
    ref = ac.upload_artifact(client, host.address, src)
    assert ref.size_bytes == 0 and ref.sha256 == sha(b"")
    assert ac.download_artifact(client, ref, files / "out").read_bytes() == b""
    host.artifacts.delete(ref.artifact_id)
    with pytest.raises(HostError):
        ac.download_artifact(client, ref, files / "gone")
    assert not (files / "gone").exists()


def test_hash_mismatch_keeps_nothing(host: Host, client: HostClient) -> None:
    url = f"{host.address}/artifacts?name=x&sha256={sha(b'expected')}"
    answer = raw(client, "POST", url, body=b"received", content_type="application/octet-stream")
    wire = error_body(answer)
    assert (answer[0], wire["code"], wire["error_type"]) == (
        400,
        "checksum-mismatch",
        "SerializationError",
    )
    assert host.artifacts.list() == []
    assert spool_is_empty(host)
    assert host.artifacts.usage()["reserved_bytes"] == 0


def test_bad_query_values(host: Host, client: HostClient) -> None:
    for query, code in (
        ("expires_at=soon", "bad-query"),
        ("owner_agent_id=../x", "bad-agent-id"),
        ("sha256=nothex", "invalid-body"),
    ):
        answer = raw(
            client,
            "POST",
            f"{host.address}/artifacts?{query}",
            body=b"x",
            content_type="application/octet-stream",
        )
        assert answer[0] == 400, query
        assert error_body(answer)["code"] == code


def test_limits_refuse_before_reading(make_host: Callable[..., Host], client: HostClient) -> None:
    host = make_host("small", artifact_max_bytes=100 * KiB, artifact_storage_quota_bytes=150 * KiB)
    octet = "application/octet-stream"
    too_big = raw(
        client, "POST", f"{host.address}/artifacts", body=b"\0" * (101 * KiB), content_type=octet
    )
    assert too_big[0] == 413
    assert error_body(too_big)["code"] == "body-too-large"
    first = raw(
        client, "POST", f"{host.address}/artifacts", body=b"\1" * (100 * KiB), content_type=octet
    )
    assert first[0] == 200
    full = raw(
        client, "POST", f"{host.address}/artifacts", body=b"\2" * (60 * KiB), content_type=octet
    )
    wire = error_body(full)
    assert (full[0], wire["code"], wire["error_type"]) == (
        507,
        "quota-exceeded",
        "StorageQuotaError",
    )
    assert len(host.artifacts.list()) == 1 and spool_is_empty(host)


def test_chunked_body_is_counted_while_it_streams(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("chunky", artifact_max_bytes=64 * KiB)
    parts = urlsplit(host.address)

    def post_chunked(chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.request(
                "POST",
                "/artifacts?name=streamed",
                body=iter(chunks),
                headers={"Content-Type": "application/octet-stream"},
                encode_chunked=True,
            )
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    status, body = post_chunked([payload(10 * KiB, i) for i in range(3)])
    assert status == 200
    assert body["artifact"]["size_bytes"] == 30 * KiB
    status, body = post_chunked([payload(10 * KiB, i) for i in range(7)])
    assert (status, body["code"]) == (413, "body-too-large")
    assert len(host.artifacts.list()) == 1 and spool_is_empty(host)


# -- ranges -----------------------------------------------------------------------------------


def test_ranges_etag_and_if_range(host: Host, client: HostClient) -> None:
    data = payload(2 * 1024 * KiB + 5)
    ref = host.artifacts.put_bytes(data, name="r.bin")
    url = f"{host.address}/artifacts/{ref.artifact_id[:10]}"
    etag = f'"sha256-{ref.sha256}"'
    accept = "application/octet-stream"

    status, headers, body = raw(client, "GET", url, accept=accept)
    assert (status, body) == (200, data)
    assert headers["ETag"] == etag
    assert headers["X-Paglets-Artifact-Sha256"] == ref.sha256
    assert headers["Accept-Ranges"] == "bytes"

    status, headers, body = raw(client, "GET", url, accept=accept, headers={"Range": "bytes=1000-"})
    assert (status, body) == (206, data[1000:])
    assert headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"

    status, _, body = raw(client, "GET", url, accept=accept, headers={"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    status, _, body = raw(client, "GET", url, accept=accept, headers={"Range": "bytes=-7"})
    assert (status, body) == (206, data[-7:])

    same = {"Range": "bytes=5-", "If-Range": etag}
    assert raw(client, "GET", url, accept=accept, headers=same)[2] == data[5:]
    other = {"Range": "bytes=5-", "If-Range": '"sha256-' + "0" * 64 + '"'}
    status, _, body = raw(client, "GET", url, accept=accept, headers=other)
    assert (status, body) == (200, data)  # another version: the whole thing

    past = raw(client, "GET", url, accept=accept, headers={"Range": f"bytes={len(data)}-"})
    assert past[0] == 416
    assert past[1]["Content-Range"] == f"bytes */{len(data)}"
    assert error_body(past)["code"] == "range-not-satisfiable"

    status, headers, body = raw(client, "HEAD", url, accept=accept)
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(data)))


def test_download_resumes_a_part_file(
    host: Host, client: HostClient, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ac, "PART_BYTES", 64 * KiB)
    data = payload(300 * KiB)
    ref = ac.artifact_info(client, host.address, host.artifacts.put_bytes(data).artifact_id)
    target = files / "big.bin"
    part = ac.part_path(target, ref)
    part.write_bytes(data[: 200 * KiB])  # an earlier, interrupted download
    recorder = Recording(client)
    assert ac.download_artifact(recorder, ref, target).read_bytes() == data
    ranges = [h.get("Range") for _, _, h in recorder.calls]
    assert ranges == [f"bytes={200 * KiB}-{264 * KiB - 1}", f"bytes={264 * KiB}-{300 * KiB - 1}"]
    assert all(h.get("If-Range") == f'"sha256-{ref.sha256}"' for _, _, h in recorder.calls)
    assert not part.exists()

    part.write_bytes(b"garbage!" * KiB)  # a damaged leftover: one fresh attempt repairs it
    target.unlink()
    assert ac.download_artifact(client, ref, target).read_bytes() == data

    target.unlink()
    part.write_bytes(data[: 100 * KiB])
    recorder = Recording(client)
    ac.download_artifact(recorder, ref, target, resume=False)
    assert recorder.calls[0][2]["Range"] == f"bytes=0-{64 * KiB - 1}"


def test_download_retries_a_dropped_connection(
    host: Host, client: HostClient, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ac, "PART_BYTES", 32 * KiB)
    data = payload(100 * KiB)
    ref = ac.artifact_info(client, host.address, host.artifacts.put_bytes(data).artifact_id)
    recorder = Recording(client, fail=lambda method, url, n: n == 2)
    assert ac.download_artifact(recorder, ref, files / "d").read_bytes() == data
    assert [h["Range"] for _, _, h in recorder.calls].count(f"bytes={32 * KiB}-{64 * KiB - 1}") == 2


def test_corrupt_transfer_is_never_renamed_into_place(
    host: Host, client: HostClient, files: Path
) -> None:
    ref = ac.artifact_info(client, host.address, host.artifacts.put_bytes(b"true").artifact_id)
    lie = ArtifactRef.from_wire({**ref.to_wire(), "sha256": sha(b"fake")})
    with pytest.raises(SerializationError) as info:
        ac.download_artifact(client, lie, files / "out")
    assert info.value.code == "checksum-mismatch"
    assert list(files.iterdir()) == []


# -- resumable uploads ------------------------------------------------------------------------


def test_resumable_upload_through_the_client(
    host: Host, client: HostClient, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ac, "RESUMABLE_ABOVE", 64 * KiB)
    monkeypatch.setattr(ac, "PART_BYTES", 48 * KiB)
    data = payload(200 * KiB, 3)
    src = files / "large.bin"
    src.write_bytes(data)
    puts = 0

    def drop_second_put(method: str, url: str, n: int) -> bool:
        nonlocal puts
        if method == "PUT":
            puts += 1
            return puts == 2
        return False

    recorder = Recording(client, fail=drop_second_put)
    seen: list[tuple[int, int]] = []
    ref = ac.upload_artifact(
        recorder, host.address, src, owner_agent_id="a1", progress=lambda d, t: seen.append((d, t))
    )
    assert (ref.size_bytes, ref.sha256, ref.owner_agent_id) == (len(data), sha(data), "a1")
    methods = [m for m, _, _ in recorder.calls]
    assert methods[0] == "POST" and methods[-1] == "POST"
    assert methods.count("PUT") == 6  # 5 parts, one sent twice
    assert "GET" in methods  # after the failure the client asked for the offset
    assert seen[-1] == (len(data), len(data))
    assert host.artifacts.get(ref.artifact_id).sha256 == sha(data)
    assert spool_is_empty(host) and host.artifacts.usage()["reserved_bytes"] == 0

    again = Recording(client)
    assert ac.upload_artifact(again, host.address, src, owner_agent_id="a1") == ref
    assert [m for m, _, _ in again.calls] == ["POST"]  # content already there: no bytes sent


def test_resumable_protocol_routes(host: Host, client: HostClient) -> None:
    data = payload(10 * KiB)
    base = f"{host.address}/artifacts/uploads"
    create = {"name": "u.bin", "size_bytes": len(data), "sha256": sha(data)}
    opened = client.post_json(base, create)
    assert opened["offset"] == 0
    uid = opened["upload_id"]
    octet = "application/octet-stream"

    status, _, body = raw(
        client, "PUT", f"{base}/{uid}?offset=0", body=data[:4000], content_type=octet
    )
    assert (status, json.loads(body)) == (200, {"offset": 4000, "size_bytes": len(data)})
    wrong = raw(client, "PUT", f"{base}/{uid}?offset=0", body=data[:10], content_type=octet)
    wire = error_body(wrong)
    assert (wrong[0], wire["code"], wire["detail"]["offset"]) == (409, "upload-offset", 4000)
    assert client.get_json(f"{base}/{uid}") == {
        "upload_id": uid,
        "offset": 4000,
        "size_bytes": len(data),
    }
    short = raw(client, "POST", f"{base}/{uid}/complete")
    assert (short[0], error_body(short)["code"]) == (409, "upload-offset")
    past_end = raw(
        client, "PUT", f"{base}/{uid}?offset=4000", body=data[4000:] + b"!", content_type=octet
    )
    assert (past_end[0], error_body(past_end)["code"]) == (413, "body-too-large")
    raw(client, "PUT", f"{base}/{uid}?offset=4000", body=data[4000:], content_type=octet)
    done = client.post_json(f"{base}/{uid}/complete")
    assert done["artifact"]["sha256"] == sha(data)
    assert host.artifacts.get(done["artifact"]["artifact_id"]).name == "u.bin"
    gone = raw(client, "GET", f"{base}/{uid}")
    assert (gone[0], error_body(gone)["code"]) == (404, "unknown-upload")

    bad = client.post_json(base, {**create, "sha256": sha(b"something else")})
    raw(client, "PUT", f"{base}/{bad['upload_id']}?offset=0", body=data, content_type=octet)
    mismatch = raw(client, "POST", f"{base}/{bad['upload_id']}/complete")
    assert (mismatch[0], error_body(mismatch)["code"]) == (400, "checksum-mismatch")
    assert raw(client, "GET", f"{base}/{bad['upload_id']}")[0] == 404  # dropped

    dropped = client.post_json(base, create | {"owner_agent_id": "other"})
    assert client.delete_json(f"{base}/{dropped['upload_id']}") == {"ok": True}
    assert raw(client, "DELETE", f"{base}/{dropped['upload_id']}")[0] == 404
    typed = raw(client, "POST", base, body=b'{"size_bytes": "big", "sha256": "x"}')
    assert (typed[0], error_body(typed)["code"]) == (400, "invalid-body")
    assert "size_bytes" in error_body(typed)["error"]
    assert spool_is_empty(host) and host.artifacts.usage()["reserved_bytes"] == 0


# -- ids, listing, encodings --------------------------------------------------------------------


def test_prefixes_over_http(
    host: Host, client: HostClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ["feedface" + "0" * 24, "feedface" + "1" * 24]
    queue = [uuid.UUID(hex=i) for i in ids]
    monkeypatch.setattr(artifact_store_module, "uuid", SimpleNamespace(uuid4=lambda: queue.pop(0)))
    host.artifacts.put_bytes(b"a")
    host.artifacts.put_bytes(b"b")
    ambiguous = raw(client, "GET", f"{host.address}/artifacts/feedface/metadata")
    wire = error_body(ambiguous)
    assert (ambiguous[0], wire["code"], wire["detail"]["candidates"]) == (409, "ambiguous-id", ids)
    assert (
        client.get_json(f"{host.address}/artifacts/feedface1/metadata")["artifact"]["artifact_id"]
        == ids[1]
    )
    for bad, status, code in (
        ("feed", 400, "bad-artifact-id"),
        ("not-hex-at-all", 400, "bad-artifact-id"),
        ("0123456789", 404, "artifact-not-found"),
    ):
        answer = raw(client, "GET", f"{host.address}/artifacts/{bad}")
        assert (answer[0], error_body(answer)["code"]) == (status, code), bad
    deleted = client.delete_json(f"{host.address}/artifacts/feedface0")
    assert deleted == {"ok": True, "artifact_id": ids[0]}


def test_listing_pages_and_msgpack(host: Host, client: HostClient) -> None:
    refs = sorted(
        (host.artifacts.put_bytes(bytes([i])) for i in range(5)), key=lambda r: r.artifact_id
    )
    page = client.get_json(f"{host.address}/artifacts?limit=2")
    assert [a["artifact_id"] for a in page["artifacts"]] == [r.artifact_id for r in refs[:2]]
    assert page["next_cursor"] == refs[1].artifact_id
    rest = client.get_json(f"{host.address}/artifacts?limit=10&cursor={page['next_cursor']}")
    assert len(rest["artifacts"]) == 3 and rest["next_cursor"] is None
    unpaged = client.get_json(f"{host.address}/artifacts")
    assert len(unpaged["artifacts"]) == 5 and unpaged["truncated"] is False
    by_hash = client.get_json(f"{host.address}/artifacts?sha256={refs[0].sha256}")
    assert [a["artifact_id"] for a in by_hash["artifacts"]] == [refs[0].artifact_id]
    status, headers, body = client.request(
        "GET",
        f"{host.address}/artifacts/{refs[0].artifact_id}/metadata",
        accept="application/msgpack",
    )
    import msgspec

    assert status == 200 and headers["Content-Type"].startswith("application/msgpack")
    assert msgspec.msgpack.decode(body)["artifact"]["artifact_id"] == refs[0].artifact_id
    assert len(ac.list_artifacts(client, host.address)) == 5


def test_pickle_is_refused_on_artifact_routes(host: Host, client: HostClient) -> None:
    answer = raw(
        client,
        "POST",
        f"{host.address}/artifacts",
        body=b"\x80\x04.",
        content_type="application/x-paglets-pickle",
    )
    assert (answer[0], error_body(answer)["code"]) == (415, "pickle-refused")
    assert host.artifacts.list() == []


def test_owner_ids_are_checked_before_lookup(host: Host, client: HostClient) -> None:
    answer = raw(client, "GET", f"{host.address}/artifacts?owner_agent_id=..%2Fetc")
    assert (answer[0], error_body(answer)["code"]) == (400, "bad-agent-id")
    assert os.path.basename(str(host.artifacts.root)) == "artifacts"
