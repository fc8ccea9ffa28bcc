"""Task paglets on real hosts: start, status, wait (which releases the turn), moves."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from paglets import Host, Message
from paglets.core.errors import HostError, PagletTimeoutError
from paglets.examples.patterns import (
    HoppingTask,
    HopRequest,
    HopResult,
    ManualTask,
    SquareRequest,
    SquareResult,
    SquareTask,
)
from paglets.patterns.tasks import TaskClient, TaskStatus


def test_task_completes_inside_start(host: Host) -> None:
    client = TaskClient.for_paglet(host.create(SquareTask), SquareTask)
    snapshot = client.start(SquareRequest(n=12))
    assert snapshot.status is TaskStatus.COMPLETED and snapshot.done and snapshot.completed
    assert snapshot.result == SquareResult(square=144)
    assert snapshot.host_name == "alpha" and snapshot.host_url == host.address
    assert snapshot.started_at <= snapshot.completed_at
    assert client.status() == snapshot
    # The state survives in the paglet: any host can read it.
    assert host.get_state(client.proxy.agent_id).result == {"square": 144}


def test_a_raising_task_is_failed_not_an_error(host: Host) -> None:
    client = TaskClient.for_paglet(host.create(SquareTask), SquareTask)
    snapshot = client.start_and_wait(SquareRequest(n=-2))
    assert snapshot.status is TaskStatus.FAILED and snapshot.done and snapshot.failed
    assert "n must be >= 0, got -2" in snapshot.error
    assert snapshot.result is None


def test_client_checks_the_request_type(host: Host) -> None:
    client = TaskClient.for_paglet(host.create(SquareTask), SquareTask)
    with pytest.raises(TypeError, match="SquareRequest"):
        client.start(HopRequest(target="x"))
    assert client.start({"n": 3}).result == SquareResult(square=9)  # the wire dict works too


def test_task_stays_running_until_completed_by_a_message(host: Host) -> None:
    proxy = host.create(ManualTask)
    client = TaskClient(proxy)
    snapshot = client.start_and_wait({}, wait_timeout=0.05)
    assert snapshot.status is TaskStatus.RUNNING and not snapshot.done
    with pytest.raises(HostError, match="already RUNNING"):
        client.start({})
    assert proxy.send(Message("finish", {"value": "ok"})) is True
    done = client.wait(0.05)
    assert done.status is TaskStatus.COMPLETED and done.result == {"value": "ok"}


def test_wait_releases_the_turn_so_the_finishing_message_runs(host: Host) -> None:
    proxy = host.create(ManualTask)
    client = TaskClient(proxy)
    client.start({})
    # A long wait is in progress (in the paglet's turn) while "give-up" arrives: if the
    # wait held the turn, "give-up" would time out waiting for it.
    waiting = proxy.send_future(Message("wait", {"wait_timeout": 60.0}), timeout=90.0)
    assert proxy.send(Message("give-up", {"reason": "enough"}), timeout=30.0) is True
    reply = waiting.get_reply(timeout=30.0)
    assert reply["status"] == "FAILED" and reply["done"] is True
    assert reply["error"] == "enough"


def test_wait_done_times_out_with_the_status(host: Host) -> None:
    client = TaskClient(host.create(ManualTask))
    client.start({})
    with pytest.raises(PagletTimeoutError, match="RUNNING"):
        client.wait_done(timeout=0.1, wait_timeout=0.05)


def test_a_task_that_moves_itself_is_followed_by_the_client(
    make_host: Callable[..., Host],
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    proxy = alpha.create(HoppingTask)
    client = TaskClient.for_paglet(proxy, HoppingTask)
    # The "start" reply is the new location; the client re-points and asks there.
    assert proxy.send(Message("status"))["status"] == "NEW"
    snapshot = client.start(HopRequest(target=beta.address))
    assert client.proxy.host_url == beta.address
    assert client.proxy.agent_id == proxy.agent_id
    assert snapshot.status is TaskStatus.COMPLETED
    assert snapshot.result == HopResult(host_name="beta")
    assert snapshot.host_name == "beta"
    assert proxy.agent_id in beta.registry.live and proxy.agent_id not in alpha.registry.live


def test_the_raw_start_reply_of_a_moving_task_is_its_proxy_wire(
    make_host: Callable[..., Host],
) -> None:
    alpha, beta = make_host("alpha"), make_host("beta")
    proxy = alpha.create(HoppingTask)
    reply = proxy.send(Message("start", {"request": {"target": beta.address}}))
    assert reply == {"host_url": beta.address, "agent_id": proxy.agent_id}
