"""Hostile and malformed requests against a real host (targets.md r5): every one is answered
below 500 with the error body of network.md §1.5, the host keeps serving, and nothing is
written outside its persistence dir.

One generator (`hostile_request`, driven by a `random.Random`) serves both runs: hypothesis
drives it for a few hundred examples in the normal suite; the `slow` run sends 100,000.
Move targets are only names and loopback addresses nobody listens on: the fuzzer must never
make the host open a connection anywhere else.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paglets import Host
from support.http_calls import Http

QUIET = "support.messaging_models:Quiet"
AGENTS = ("q1", "q2", "q3")

IDS = [
    *AGENTS,
    "nobody",
    "../x",
    "..",
    "a..b",
    "a/b",
    "%2e%2e",
    "x" * 129,
    "-x",
    ".x",
    "\x00",
    "é",
    " ",
    "q1%00",
    "q1\\..\\x",
    "",
]
ROUTES = [
    ("GET", "/health"),
    ("GET", "/hosts"),
    ("GET", "/events"),
    ("GET", "/agents"),
    ("POST", "/agents"),
    ("GET", "/agents/{id}"),
    ("GET", "/agents/{id}/state"),
    ("GET", "/agents/{id}/mailbox"),
    ("POST", "/agents/{id}/messages"),
    ("POST", "/agents/{id}/dispatch"),
    ("POST", "/agents/{id}/clone"),
    ("POST", "/agents/{id}/retract"),
    ("POST", "/agents/{id}/deactivate"),
    ("POST", "/agents/{id}/activate"),
    ("POST", "/agents/{id}/dispose"),
    ("POST", "/multicast"),
    ("POST", "/diagnostics/import"),
    ("GET", "/mesh/hello"),
    ("POST", "/relay/connect"),
    ("GET", "/agents/{id}/messages/extra"),
    ("GET", "//agents"),
    ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
    ("GET", "/ui/static/../../paglets.db"),
]
QUERIES = [
    "",
    "?limit=abc",
    "?limit=-1",
    "?limit=99999",
    "?limit=5&offset=2",
    "?state=x",
    "?state=all&include_state=1",
    "?since=-5",
    "?since=99999999999999999999",
    "?kind=create&agent_id=../x",
    "?nonce=zz",
    "?nonce=0123456789abcdef0123456789abcdef",
    "?cursor=abc",
    "?include_state=maybe",
    "?job=x&limit=1000",
]
CLASSES = [
    QUIET,
    "support.messaging_models:Point",
    "os:system",
    "builtins:eval",
    "__main__:X",
    "subprocess:Popen",
    "support:nothing",
    "support.nothing_here_q:X",
    "..:x",
    "a:b:c",
    "support.messaging_models:Quiet.__init__",
    "support.messaging_models:__class__",
    "support.messaging_models:<locals>.X",
    "x" * 2000,
]
KINDS = ["ping", "", "_dispose", "_clone", "_deactivate", "_dispatch", "_revert", "k" * 2000]
# Never a URL off this machine: the host must not be made to connect anywhere else.
TARGETS = [None, "", " ", "nowhere", "fuzz", "http://127.0.0.1:1", "t" * 300, 7, ["x"]]
MEDIA = [
    "application/json",
    "application/msgpack",
    "application/x-msgpack",
    "application/vnd.msgpack",
    "application/json; charset=utf-8",
    "application/x-paglets-pickle",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    None,
]
DEADLINES = [None, "", "0", "-1", "abc", "99999999999", "1e3", "10000"]


def _leaf(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            2**63,
            2**70,
            1.5,
            float("inf"),
            "",
            "é\x00\u2028",
            "x" * rng.randint(0, 300),
            {"__paglets_binary__": "bytes", "base64": "!!notbase64"},
            {"__paglets_binary__": "bytes", "base64": "AAE="},
            {"__paglets_binary__": "weird", "base64": 3},
        ]
    )


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return _leaf(rng)
    if roll < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["kind", "args", "arg", "priority", "state", "x", "", "message", "policy", "names"]
    return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _maybe(rng: random.Random, good: Any) -> Any:
    return good if rng.random() < 0.6 else _value(rng)


def _message(rng: random.Random) -> Any:
    message: dict[str, Any] = {"kind": _maybe(rng, rng.choice(KINDS))}
    if rng.random() < 0.5:
        message["args"] = _maybe(rng, {"target": rng.choice(TARGETS), "x": _value(rng)})
    for name, good in (
        ("priority", 5),
        ("message_type", 0),
        ("message_id", "m1"),
        ("timestamp", 1.0),
    ):
        if rng.random() < 0.2:
            message[name] = _maybe(rng, good)
    return _maybe(rng, message)


def _structured(rng: random.Random, path: str) -> Any:
    if path.endswith("/messages"):
        body = {"message": _message(rng), "oneway": _maybe(rng, rng.random() < 0.3)}
        if rng.random() < 0.3:
            body["no_delay"] = _maybe(rng, True)
        return body
    if path == "/multicast":
        return {"message": _message(rng), "exclude": _maybe(rng, ["q1"])}
    if path == "/agents":
        body = {"agent_class_name": _maybe(rng, rng.choice(CLASSES))}
        if rng.random() < 0.5:
            body["agent_id"] = _maybe(rng, rng.choice(IDS))
        if rng.random() < 0.3:
            body["state"] = _value(rng)
        if rng.random() < 0.1:
            body["envelope"] = "gASV"
        return body
    if path.endswith(("/dispatch", "/clone", "/retract")):
        if rng.random() < 0.3:
            ticket = {"destination": rng.choice(TARGETS), "timeout": _maybe(rng, 1.0)}
            return {"ticket": _maybe(rng, ticket)}
        return {"target": rng.choice(TARGETS)}
    if path.endswith("/deactivate"):
        policy = {"activate_on_message": _maybe(rng, True), "activate_at": _maybe(rng, None)}
        return {"request": _maybe(rng, {"reason": _maybe(rng, "r"), "policy": policy})}
    if path == "/diagnostics/import":
        names = [rng.choice(CLASSES) for _ in range(rng.randint(0, 3))]
        return {"names": _maybe(rng, names), "expect": _maybe(rng, "paglet")}
    return _value(rng)


@dataclass
class Request:
    method: str
    path: str
    raw: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


def _encode(rng: random.Random, body: Any, media: str | None) -> bytes:
    try:
        if media and "msgpack" in media and rng.random() < 0.9:
            return msgspec.msgpack.encode(body)
        return json.dumps(body, allow_nan=True).encode()
    except (TypeError, ValueError, OverflowError):
        return b"\xc1\xff{"


def hostile_request(rng: random.Random) -> Request:
    method, template = rng.choice(ROUTES)
    agent_id = rng.choice(IDS) if rng.random() < 0.7 else rng.choice(AGENTS)
    safe = "" if rng.random() < 0.8 else "/."
    path = template.replace("{id}", quote(agent_id, safe=safe)) + rng.choice(QUERIES)
    if rng.random() < 0.1:
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
    headers: dict[str, str] = {"Accept": rng.choice(["application/json", "application/msgpack"])}
    media = rng.choice(MEDIA)
    raw: bytes | None = None
    if method != "GET" or rng.random() < 0.05:
        roll = rng.random()
        if roll < 0.6:
            raw = _encode(rng, _structured(rng, template), media)
        elif roll < 0.8:
            raw = _encode(rng, _value(rng), media)
        elif roll < 0.998:
            raw = rng.randbytes(rng.randint(0, 200))
        else:  # a huge declared body that never comes: refused unread, not waited for
            raw = b""
            headers["Content-Length"] = str(2**31)
    if media is not None and (raw is not None or rng.random() < 0.2):
        headers["Content-Type"] = media
    deadline = rng.choice(DEADLINES)
    if deadline is not None:
        headers["X-Paglets-Deadline-Ms"] = deadline
    if rng.random() < 0.05:
        headers["X-Request-Id"] = rng.choice(["ok-1", "bad id\t", "x" * 500])
    return Request(method, path, raw, headers)


class Target:
    """The fuzzed host, a connection to it, and what it must still look like afterwards."""

    def __init__(self, make_host: Callable[..., Host], tmp_path: Path) -> None:
        self.root = tmp_path
        self.cwd_before = set(os.listdir(os.getcwd()))
        self.host = make_host("fuzz", allow_modules=["support"])
        self.client = Http(self.host.address)
        self.reset()

    def reset(self) -> None:
        for agent_id in AGENTS:
            if self.client.get(f"/agents/{agent_id}").status == 404:
                made = self.client.post(
                    "/agents", {"agent_class_name": QUIET, "agent_id": agent_id}
                )
                assert made.status == 200, made.body

    def check(self, request: Request) -> int:
        answer = self.client.request(
            request.method, request.path, raw=request.raw, headers=request.headers
        )
        where = f"{request.method} {request.path} {request.headers} {request.raw!r:.300}"
        assert answer.status < 500, f"{where} -> {answer.status} {answer.raw!r:.600}"
        if answer.status >= 400:
            body = answer.body
            assert isinstance(body, dict), where
            assert body["code"] and body["error"] and body["status"] == answer.status, where
            assert body["traceback"] is None, where
        return answer.status

    def finish(self) -> None:
        assert self.client.get("/health").status == 200
        self.client.close()
        assert {p.name for p in self.root.iterdir()} == {"fuzz"}
        assert set(os.listdir(os.getcwd())) == self.cwd_before
        outside = [
            p
            for p in self.host.persistence_dir.rglob("*")
            if not p.resolve().is_relative_to(self.host.persistence_dir)
        ]
        assert outside == []


def test_hostile_requests_get_clear_4xx_answers(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    target = Target(make_host, tmp_path)

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(rng=st.randoms(use_true_random=False))
    def one(rng: random.Random) -> None:
        target.check(hostile_request(rng))

    one()
    target.finish()


@pytest.mark.slow
def test_a_hundred_thousand_hostile_requests(
    make_host: Callable[..., Host], tmp_path: Path
) -> None:
    target = Target(make_host, tmp_path)
    rng = random.Random(20261125)
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + 1800  # bounded in time as well as in count
    for i in range(100_000):
        status = target.check(hostile_request(rng))
        statuses[status] = statuses.get(status, 0) + 1
        if i % 5000 == 0:
            target.reset()
        if time.monotonic() > deadline:
            pytest.fail(f"only {i} requests in 30 minutes: {statuses}")
    target.finish()
    assert sum(statuses.values()) == 100_000
