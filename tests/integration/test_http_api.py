"""The HTTP API of a real in-process host, through a plain HTTP client (network.md §1).

Every answer is checked on the wire: status, the error body of §1.5, JSON's binary tag and
MessagePack's native bytes, paging, the event stream, limits and media types.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import make_mocked_request

from paglets import Host, Message
from paglets.core.errors import PagletMovedError
from paglets.runtime.http_wire import error_response
from support import messaging_models as mm
from support.http_calls import Answer, Http
from support.waiting import wait_until

ECHO = "support.messaging_models:Echo"
HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    mm.release_all()


@pytest.fixture
def client(host: Host) -> Iterator[Http]:
    with Http(host.address) as http_client:
        yield http_client


def assert_error(answer: Answer, status: int, code: str, error_type: str | None = None) -> dict:
    body = answer.body
    assert answer.status == status, body
    assert body["status"] == status
    assert body["code"] == code
    assert body["error"]
    assert body["request_id"]
    assert "error_module" in body and "host_name" in body and "traceback" in body
    if error_type is not None:
        assert body["error_type"] == error_type
    return body


def create(client: Http, agent_id: str, cls: str = ECHO, **body: Any) -> Answer:
    answer = client.post("/agents", {"agent_class_name": cls, "agent_id": agent_id, **body})
    assert answer.status == 200, answer.body
    return answer


def send(
    client: Http, agent_id: str, kind: str, headers: dict[str, str] | None = None, **kw: Any
) -> Answer:
    message = {"kind": kind, **kw.pop("message", {})}
    return client.post(f"/agents/{agent_id}/messages", {"message": message, **kw}, headers=headers)


# -- host routes --------------------------------------------------------------------------


def test_health_has_the_identity_and_protocol_fields(
    make_host: Callable[..., Host], tmp_path: Any
) -> None:
    host = make_host("alpha")
    with Http(host.address) as client:
        body = client.get("/health").body
    assert body["name"] == "alpha" and body["address"] == host.address
    assert body["status"] == "ok"
    assert HEX32.fullmatch(body["host_id"])
    assert body["protocol"] == 1
    assert body["auth_required"] is False and body["insecure"] is False
    assert body["uptime_s"] >= 0
    assert body["paglets_version"]
    assert "events:stream" in body["capabilities"]
    assert {"active_count", "inactive_count", "code_version", "tags", "properties"} <= set(body)
    first_id = body["host_id"]
    host.stop()
    again = make_host("alpha", persistence_dir=tmp_path / "alpha")
    with Http(again.address) as client:
        assert client.get("/health").body["host_id"] == first_id  # kept in the store


def test_hosts_lists_this_host_as_a_host_ref(host: Host, client: Http) -> None:
    body = client.get("/hosts").body
    [ref] = body["hosts"]
    assert ref["name"] == host.name and ref["url"] == host.address
    assert ref["online"] is True and ref["host_id"] == client.get("/health").body["host_id"]
    assert client.get("/hosts?status=dead").body == {"hosts": []}


def test_unknown_route_and_wrong_method_answer_the_error_body(client: Http) -> None:
    assert_error(client.get("/no/such/route"), 404, "no-route", "HostError")
    answer = client.request("DELETE", "/health")
    assert_error(answer, 405, "method-not-allowed")
    assert "GET" in answer.headers["Allow"]
    # Errors follow Accept too.
    packed = client.get("/nope", fmt="msgpack")
    assert packed.headers["Content-Type"].startswith("application/msgpack")
    assert packed.body["code"] == "no-route"


def test_caller_request_id_is_echoed_in_errors(client: Http) -> None:
    answer = client.get("/nope", headers={"X-Request-Id": "req-42"})
    assert answer.body["request_id"] == "req-42"
    assert answer.headers["X-Request-Id"] == "req-42"


# -- creating and reading paglets ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_create_then_info_and_state(client: Http, host: Host, fmt: str) -> None:
    answer = client.post(
        "/agents",
        {"agent_class_name": ECHO, "agent_id": "e1", "state": {"count": 7, "log": ["x"]}},
        fmt=fmt,
    )
    assert answer.status == 200
    assert answer.body == {"proxy": {"host_url": host.address, "agent_id": "e1"}}
    info = client.get("/agents/e1", fmt=fmt).body
    assert info["agent_id"] == "e1" and info["class_name"] == ECHO and info["active"] is True
    state = client.get("/agents/e1/state", fmt=fmt).body
    assert state["state"] == {"count": 7, "log": ["x"]}
    assert state["state_source"] == "live"
    assert state["agent_id"] == "e1"


def test_create_generates_an_id_and_refuses_a_duplicate(client: Http) -> None:
    made = client.post("/agents", {"agent_class_name": ECHO}).body["proxy"]["agent_id"]
    assert HEX32.fullmatch(made)
    create(client, "dup")
    again = client.post("/agents", {"agent_class_name": ECHO, "agent_id": "dup"})
    assert_error(again, 409, "agent-exists", "DuplicateAgentError")


def test_create_refusals_name_what_was_wrong(client: Http) -> None:
    legacy = client.post("/agents", {"envelope": "gASV..."})
    assert_error(legacy, 400, "legacy-envelope", "SerializationError")
    missing = client.post("/agents", {"state": {}})
    assert "$.agent_class_name" in assert_error(missing, 400, "invalid-body")["error"]
    wrong = client.post("/agents", {"agent_class_name": ECHO, "state": [1, 2]})
    assert "$.state" in assert_error(wrong, 400, "invalid-body")["error"]
    main = client.post("/agents", {"agent_class_name": "__main__:Thing"})
    assert_error(main, 403, "module-not-allowed", "ForbiddenError")
    unknown = client.post("/agents", {"agent_class_name": "no_such_module_xyz:Thing"})
    body = assert_error(unknown, 400, "import-failed", "ClassImportError")
    assert "no_such_module_xyz" in body["error"]
    not_paglet = client.post("/agents", {"agent_class_name": "support.messaging_models:Point"})
    assert_error(not_paglet, 400, "not-a-paglet")
    bad_id = client.post("/agents", {"agent_class_name": ECHO, "agent_id": "../etc"})
    assert_error(bad_id, 400, "bad-agent-id", "InvalidAgentIdError")
    bad_state = client.post("/agents", {"agent_class_name": ECHO, "state": {"count": "many"}})
    assert "count" in assert_error(bad_state, 400, "invalid-body")["error"]
    assert client.get("/agents?state=all").body["total"] == 0


def test_bad_and_unknown_agent_ids(client: Http) -> None:
    for path in ("/agents/a..b", "/agents/..%2Fx/state", "/agents/-x/mailbox"):
        assert_error(client.get(path), 400, "bad-agent-id", "InvalidAgentIdError")
    assert_error(client.get("/agents/nobody"), 404, "agent-not-found", "InvalidAgentError")
    assert_error(client.post("/agents/nobody/activate"), 404, "agent-not-found")


def test_list_agents_pages_with_totals(client: Http) -> None:
    for i in range(5):
        create(client, f"p{i}")
    client.post("/agents/p4/deactivate")
    first = client.get("/agents?limit=2").body
    assert first["total"] == 4 and len(first["agents"]) == 2 and first["truncated"] is False
    second = client.get(f"/agents?limit=2&cursor={first['next_cursor']}").body
    assert second["next_cursor"] is None and len(second["agents"]) == 2
    seen = {a["agent_id"] for a in first["agents"] + second["agents"]}
    assert seen == {"p0", "p1", "p2", "p3"}
    inactive = client.get("/agents?state=inactive&include_state=1").body
    assert [a["agent_id"] for a in inactive["agents"]] == ["p4"]
    assert inactive["agents"][0]["state"] == {"count": 0, "log": []}
    everything = client.get("/agents?state=all&offset=3").body
    assert everything["total"] == 5 and len(everything["agents"]) == 2
    create(client, "deaf-1", "support.messaging_models:Deaf")
    deaf = client.get("/agents?class=support.messaging_models:Deaf").body
    assert [a["agent_id"] for a in deaf["agents"]] == ["deaf-1"] and deaf["total"] == 1
    echoes = client.get(f"/agents?state=all&class={ECHO}&limit=2").body
    assert echoes["total"] == 5 and len(echoes["agents"]) == 2 and echoes["next_cursor"] == "2"
    found = client.get("/agents?state=all&q=P4&include_state=1").body
    assert [a["agent_id"] for a in found["agents"]] == ["p4"] and "state" in found["agents"][0]
    assert_error(client.get("/agents?limit=1001"), 400, "bad-query")
    assert_error(client.get("/agents?state=sleepy"), 400, "bad-query")
    assert_error(client.get("/agents?offset=-1"), 400, "bad-query")


# -- messages -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_synchronous_message_and_typed_replies(client: Http, fmt: str) -> None:
    create(client, "e1")
    assert client.post("/agents/e1/messages", {"message": {"kind": "count"}}, fmt=fmt).body == {
        "result": 1
    }
    blob = client.post(
        "/agents/e1/messages",
        {"message": {"kind": "reply", "args": {"what": "bytes"}}},
        fmt=fmt,
    ).body["result"]
    if fmt == "json":
        assert blob == {"__paglets_binary__": "bytes", "base64": "AP9wYWdsZXRz"}
    else:
        assert blob == b"\x00\xffpaglets"
    point = client.post(
        "/agents/e1/messages", {"message": {"kind": "reply", "args": {"what": "dataclass"}}}
    ).body["result"]
    assert point == {"x": 1, "y": 2, "label": "p"}


def test_binary_arguments_arrive_as_bytes_over_both_encodings(client: Http) -> None:
    create(client, "e1")
    json_args = {
        "point": {"x": 1},
        "items": [1],
        "blob": {"__paglets_binary__": "bytes", "base64": "AAE="},
    }
    seen = send(client, "e1", "inspect", message={"args": json_args, "arg": {"x": 2}}).body
    assert seen["result"]["types"]["blob"] == "bytes"
    packed_args = {"point": {"x": 1}, "items": [1], "blob": b"\x00\x01"}
    seen = client.post(
        "/agents/e1/messages",
        {"message": {"kind": "inspect", "args": packed_args, "arg": {"x": 2}}},
        fmt="msgpack",
    ).body
    assert seen["result"]["types"]["blob"] == "bytes"
    assert seen["result"]["blob"] == b"\x00\x01"


def test_handler_errors_keep_their_type_and_traceback(client: Http) -> None:
    create(client, "e1")
    failed = assert_error(send(client, "e1", "fail"), 500, "handler-error", "ValueError")
    assert failed["error_module"] == "builtins"
    assert "bad input" in failed["error"] and "ValueError" in failed["traceback"]
    assert_error(send(client, "e1", "fail-paglet"), 403, "forbidden", "ForbiddenError")
    assert_error(send(client, "e1", "not-handled"), 422, "not-handled", "NotHandledError")
    custom = assert_error(send(client, "e1", "fail-custom"), 500, "handler-error")
    assert custom["error_type"] == "CustomError"


def test_message_body_errors_name_the_field(client: Http) -> None:
    create(client, "e1")
    answer = send(client, "e1", "count", message={"priority": "high"})
    assert assert_error(answer, 400, "invalid-body")["error"].startswith("$.message.priority")
    answer = client.post("/agents/e1/messages", {"oneway": True})
    assert "message" in assert_error(answer, 400, "invalid-body")["error"]
    answer = client.post(
        "/agents/e1/messages", raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 400, "invalid-body", "SerializationError")
    answer = send(client, "e1", "count", message={"priority": 11})
    assert_error(answer, 400, "invalid-body")


def test_oneway_is_acknowledged_when_queued(client: Http) -> None:
    create(client, "e1")
    answer = send(client, "e1", "count", oneway=True, message={"message_id": "m-1"})
    assert answer.body == {"queued": True, "message_id": "m-1"}
    wait_until(lambda: client.get("/agents/e1/state").body["state"]["count"] == 1)


def test_messages_to_an_inactive_paglet_are_held_or_refused(client: Http) -> None:
    create(client, "e1")
    policy = {"activate_on_message": False, "queue_messages_when_inactive": True}
    deactivated = client.post(
        "/agents/e1/deactivate", {"request": {"reason": "nap", "policy": policy}}
    )
    assert deactivated.body["ok"] is True
    held = send(client, "e1", "count", message={"message_id": "held-1"})
    assert held.body == {"queued": True, "message_id": "held-1"}
    assert client.get("/agents/e1/mailbox").body["held"] == 1
    refused = send(client, "e1", "count", no_delay=True)
    assert_error(refused, 400, "inactive", "PagletInactiveError")
    client.post("/agents/e1/activate")
    wait_until(lambda: client.get("/agents/e1/state").body["state"]["count"] == 1)


def test_deadline_header_bounds_a_synchronous_send(client: Http) -> None:
    create(client, "slow")
    started = time.monotonic()
    answer = send(client, "slow", "block", headers={"X-Paglets-Deadline-Ms": "200"})
    body = assert_error(answer, 504, "deadline-exceeded", "PagletTimeoutError")
    assert body["detail"]["outcome"] in ("running", "unknown")
    assert time.monotonic() - started < 8  # the header's deadline, not the 10 s default
    assert mm.started("slow").is_set()
    assert_error(
        send(client, "slow", "count", headers={"X-Paglets-Deadline-Ms": "soon"}),
        400,
        "bad-header",
    )


def test_a_blocked_handler_does_not_block_the_server(host: Host, client: Http) -> None:
    create(client, "slow")
    done: list[Answer] = []
    worker = threading.Thread(
        target=lambda: done.append(
            Http(host.address).post("/agents/slow/messages", {"message": {"kind": "block"}})
        )
    )
    worker.start()
    assert mm.started("slow").wait(10)
    with Http(host.address) as other:
        assert other.get("/health").status == 200
        assert other.get("/agents/slow").status == 200
    mm.gate("slow").set()
    worker.join(10)
    assert done and done[0].body == {"result": True}


def test_multicast_collects_replies_by_agent(client: Http) -> None:
    for agent_id in ("m1", "m2", "m3"):
        create(client, agent_id)
    create(client, "deaf", "support.messaging_models:Deaf")
    create(client, "pings", "support.messaging_models:PingOnly")
    body = client.post("/multicast", {"message": {"kind": "count"}, "exclude": ["m3"]}).body
    replies = {r["agent_id"]: r for r in body["replies"]}
    assert set(replies) == {"m1", "m2"}
    assert all(r["result"] == 1 for r in replies.values())
    only = client.post("/multicast", {"message": {"kind": "ping"}, "subscribers_only": True}).body
    assert [r["agent_id"] for r in only["replies"]] == ["pings"]
    failing = client.post("/multicast", {"message": {"kind": "fail"}, "exclude": ["m2", "m3"]}).body
    [reply] = failing["replies"]
    assert reply["agent_id"] == "m1" and reply["error"]["error_type"] == "ValueError"


# -- lifecycle ----------------------------------------------------------------------------


def test_deactivate_activate_dispose(client: Http, host: Host) -> None:
    create(client, "e1")
    request = {"reason": "nap", "policy": {"activate_on_message": True}, "metadata": {"k": 1}}
    answer = client.post("/agents/e1/deactivate", {"request": request})
    assert answer.body == {"proxy": {"host_url": host.address, "agent_id": "e1"}, "ok": True}
    info = client.get("/agents/e1").body
    assert info["active"] is False
    assert client.get("/agents/e1/state").body["state_source"] == "checkpoint"
    assert client.post("/agents/e1/activate").body["proxy"]["agent_id"] == "e1"
    assert client.get("/agents/e1").body["active"] is True
    assert client.post("/agents/e1/dispose").body == {"ok": True}
    assert_error(client.get("/agents/e1"), 404, "agent-not-found")
    bad = client.post(
        "/agents/e1/deactivate", {"request": {"policy": {"activate_on_message": "no"}}}
    )
    assert bad.status in (400, 404)


def test_clone_on_this_host_and_mailbox(client: Http, host: Host) -> None:
    create(client, "e1", state={"count": 3, "log": []})
    clone = client.post("/agents/e1/clone", {"target": None}).body["proxy"]
    assert clone["host_url"] == host.address and clone["agent_id"] != "e1"
    assert client.get(f"/agents/{clone['agent_id']}/state").body["state"]["count"] == 3
    assert client.get("/agents/e1/mailbox").body == {
        "queued": 0,
        "in_flight": 0,
        "delivered": 0,
        "failed": 0,
        "held": 0,
    }


def test_dispatch_between_hosts_leaves_a_307_pointer(make_host: Callable[..., Host]) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    with Http(alpha.address) as a, Http(beta.address) as b:
        create(a, "e1")
        moved = a.post("/agents/e1/dispatch", {"target": beta.address}).body
        assert moved["proxy"] == {"host_url": beta.address, "agent_id": "e1"}
        assert moved["acknowledged"] is True
        answer = a.post("/agents/e1/messages?x=1", {"message": {"kind": "count"}})
        body = assert_error(answer, 307, "moved", "PagletMovedError")
        assert answer.headers["Location"] == f"{beta.address}/agents/e1/messages?x=1"
        assert body["moved"]["host_url"] == beta.address
        assert answer.headers["X-Paglets-Epoch"] == str(body["moved"]["epoch"])
        assert a.get("/agents/e1/state").status == 307
        assert send(b, "e1", "count").body == {"result": 1}
        back = b.post("/agents/e1/retract", {"target": alpha.address}).body
        assert back["proxy"]["host_url"] == alpha.address
        assert a.get("/agents/e1").body["active"] is True
        refused = a.post("/agents/e1/dispatch", {})
        assert "ticket" in assert_error(refused, 400, "invalid-body")["error"]


def test_moved_error_renders_location_with_path_and_query() -> None:
    request = make_mocked_request("GET", "/agents/e1/state?x=1")
    moved = {"agent_id": "e1", "host_url": "http://b:1/", "epoch": 4, "host_name": "b"}
    answer = error_response(request, PagletMovedError("gone", moved=moved), "a")
    assert answer.status == 307
    assert answer.headers["Location"] == "http://b:1/agents/e1/state?x=1"
    assert answer.headers["X-Paglets-Epoch"] == "4"
    assert json.loads(answer.body)["moved"] == moved


# -- events -------------------------------------------------------------------------------


def test_events_page_through_the_log(client: Http) -> None:
    create(client, "e1")
    create(client, "e2")
    page = client.get("/events?limit=1").body
    assert len(page["events"]) == 1 and page["last_event_id"] == page["events"][0]["event_id"]
    creates = client.get("/events?kind=create").body["events"]
    assert [e["agent_id"] for e in creates] == ["e1", "e2"]
    rest = client.get(f"/events?kind=create&since={creates[0]['event_id']}").body["events"]
    assert [e["agent_id"] for e in rest] == ["e2"]
    only = client.get("/events?agent_id=e2&kind=create").body["events"]
    assert [e["agent_id"] for e in only] == ["e2"]
    assert_error(client.get("/events?since=x"), 400, "bad-query")


class Stream:
    """An SSE reader on a raw socket (so a test sees frames as they arrive)."""

    def __init__(self, host: Host, path: str, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", host.port), timeout=10)
        lines = [f"GET {path} HTTP/1.1", "Host: x", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.buffer = ""
        status = self.file.readline()
        assert b" 200 " in status, status
        while self.file.readline() not in (b"\r\n", b""):
            pass

    def frame(self) -> dict[str, str]:
        """The next SSE block (an event or a comment), chunked framing stripped."""
        while "\n\n" not in self.buffer:
            size = int(self.file.readline().strip() or b"0", 16)
            self.buffer += self.file.read(size).decode()
            self.file.readline()
        block, _, self.buffer = self.buffer.partition("\n\n")
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                fields["comment"] = line[1:].strip()
            else:
                key, _, value = line.partition(": ")
                fields[key] = value
        return fields

    def events(self, count: int) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        while len(out) < count:
            frame = self.frame()
            if "id" in frame:
                out.append(frame)
        return out

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_event_stream_replays_follows_and_resumes(host: Host, client: Http) -> None:
    create(client, "e1")
    stream = Stream(host, "/events/stream?since=0&kind=create")
    try:
        [first] = stream.events(1)
        assert first["event"] == "create"
        assert json.loads(first["data"])["agent_id"] == "e1"
        create(client, "e2")  # live
        [second] = stream.events(1)
        assert json.loads(second["data"])["agent_id"] == "e2"
        assert int(second["id"]) > int(first["id"])
    finally:
        stream.close()
    create(client, "e3")
    resumed = Stream(host, "/events?kind=create", {"Last-Event-ID": first["id"]})
    try:
        ids = [json.loads(f["data"])["agent_id"] for f in resumed.events(2)]
        assert ids == ["e2", "e3"]
    finally:
        resumed.close()
    wait_until(lambda: host.http.events.subscribers == 0)


def test_event_stream_sends_keepalive_pings(host: Host) -> None:
    host.http.events.ping_interval = 0.05
    stream = Stream(host, "/events/stream")
    try:
        frames = [stream.frame() for _ in range(3)]
        assert any(f.get("comment") == "ping" for f in frames)
    finally:
        stream.close()


def test_host_stop_ends_open_streams(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    stream = Stream(host, "/events/stream")
    started = time.monotonic()
    host.stop()
    assert time.monotonic() - started < 5
    stream.close()


# -- limits and media types ---------------------------------------------------------------


def _raw_request(host: Host, head: str, body: bytes = b"") -> tuple[int, dict[str, Any], bool]:
    """Send a request head (and part of a body), read the answer; report whether the
    server then closed the connection."""
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = json.loads(response.read())
        closed = response.will_close and sock.recv(1) == b""
    return response.status, answer, closed


def test_oversized_declared_body_is_refused_unread(host: Host) -> None:
    status, body, closed = _raw_request(
        host,
        "POST /agents/x/activate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {2 * 1024 * 1024}\r\n\r\n",
    )
    assert status == 413 and body["code"] == "body-too-large" and closed
    assert body["detail"] == {"limit_bytes": 1024 * 1024}
    status, body, _ = _raw_request(
        host,
        "POST /agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {host.max_state_bytes + 1}\r\n\r\n",
    )
    assert status == 413 and body["code"] == "state-too-large"


def test_chunked_message_body_is_counted_while_it_streams(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("small", max_body_bytes=64 * 1024)
    with Http(host.address) as client:
        create(client, "e1")
        chunks = b"".join(b"2000\r\n" + b"x" * 0x2000 + b"\r\n" for _ in range(9))  # 72 KiB
        status, body, closed = _raw_request(
            host,
            "POST /agents/e1/messages HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunks,  # and no last chunk: the answer must not wait for the rest
        )
        assert status == 413 and body["code"] == "body-too-large" and closed
        assert send(client, "e1", "count").body == {"result": 1}


def test_media_types_are_checked_before_the_body(client: Http) -> None:
    create(client, "e1")
    pickle = client.post(
        "/agents/e1/messages",
        raw=b"\x80\x04.",
        headers={"Content-Type": "application/x-paglets-pickle"},
    )
    assert_error(pickle, 415, "pickle-refused", "SerializationError")
    text = client.post("/agents/e1/messages", raw=b"hello", headers={"Content-Type": "text/plain"})
    assert_error(text, 415, "unsupported-media-type", "SerializationError")
    for alias in ("application/x-msgpack", "application/vnd.msgpack; charset=binary"):
        answer = client.post(
            "/agents/e1/messages",
            raw=msgspec.msgpack.encode({"message": {"kind": "count"}}),
            headers={"Content-Type": alias},
        )
        assert answer.status == 200, answer.body


def test_internal_errors_hide_the_traceback(
    host: Host, client: Http, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(agent_id: str) -> dict[str, Any]:
        raise RuntimeError("bug in the host")

    monkeypatch.setattr(host, "agent_info", broken)
    with caplog.at_level(logging.ERROR, logger="paglets.http"):
        body = assert_error(client.get("/agents/e1"), 500, "internal", "HostError")
    assert body["traceback"] is None and "bug in the host" not in body["error"]
    assert "bug in the host" in caplog.text


# -- diagnostics --------------------------------------------------------------------------


def test_diagnostics_import_reports_per_name(client: Http) -> None:
    names = [ECHO, "support.messaging_models:Point", "no_such_mod_q:X", "__main__:Y"]
    body = client.post("/diagnostics/import", {"names": names, "expect": "paglet"}).body
    results = body["results"]
    assert results[ECHO]["ok"] is True and results[ECHO]["kind"] == "paglet"
    assert results[ECHO]["state_class_name"] == "support.messaging_models:EchoState"
    assert results[ECHO]["module_file"].endswith("messaging_models.py")
    assert results["support.messaging_models:Point"]["ok"] is False
    assert results["no_such_mod_q:X"]["error_type"] == "ClassImportError"
    assert results["__main__:Y"]["error_type"] == "ForbiddenError"
    assert body["code_version"] and body["python"] and body["sys_path_head"]
    state = client.post(
        "/diagnostics/import", {"names": ["support.messaging_models:Point"], "expect": "state"}
    )
    assert state.body["results"]["support.messaging_models:Point"]["kind"] == "state"
    assert_error(client.post("/diagnostics/import", {"names": "x"}), 400, "invalid-body")


def test_message_objects_survive_the_round_trip(client: Http) -> None:
    create(client, "e1")
    message = Message("ping")
    body = client.post("/agents/e1/messages", {"message": message.to_wire()}, fmt="msgpack").body
    assert body["result"]["id"] == "e1"


def test_legacy_relay_polling_is_gone(client: Http) -> None:
    assert_error(client.post("/relay/connect"), 410, "legacy-route")
    assert_error(client.get("/relay/poll/node-a"), 410, "legacy-route")


def test_event_streams_are_bounded(host: Host, client: Http) -> None:
    feed = host.http.events
    feed.subscribers = 64  # as if 64 streams were open
    try:
        answer = client.get("/events/stream")
        assert_error(answer, 503, "too-many-subscribers", "RemoteHostError")
        assert answer.headers["Retry-After"]
    finally:
        feed.subscribers = 0
