"""A retried control call with the same Idempotency-Key runs once (network.md §1.6)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable

from paglets import Host


def post(
    host: Host, path: str, body: dict[str, object], key: str | None
) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    conn.request("POST", path, body=json.dumps(body), headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    return response.status, answer


CREATE = {
    "agent_class_name": "paglets.examples.counter:Counter",
    "state_class_name": "paglets.examples.counter:CounterState",
    "state": {"name": "once"},
}


def test_a_repeated_create_with_the_same_key_makes_one_paglet(
    make_host: Callable[..., Host],
) -> None:
    host = make_host("alpha")
    first = post(host, "/agents", CREATE, "k-1")
    again = post(host, "/agents", CREATE, "k-1")
    assert first[0] == again[0] == 200
    assert first[1] == again[1]
    assert len(host.list_agents()) == 1
    other = post(host, "/agents", CREATE, "k-2")  # another key: another create
    assert other[1] != first[1]
    assert len(host.list_agents()) == 2


def test_without_a_key_each_call_runs(make_host: Callable[..., Host]) -> None:
    host = make_host("alpha")
    post(host, "/agents", CREATE, None)
    post(host, "/agents", CREATE, None)
    assert len(host.list_agents()) == 2
