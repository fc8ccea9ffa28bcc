"""What a relay node does with the requests its hub relays (network.md §3.8).

Each `req` is carried out as an HTTP request to the node's own loopback port, so every check
of a direct request runs unchanged. For a mutating request whose delivery id came from the
request itself (`keyed`: an `Idempotency-Key`, a transfer phase, a message id), the run is
kept 10 minutes under that id: a redelivery gets its answer, or joins it while it runs.

`serve` is synchronous on purpose: the link handles frames in the order they arrive without
yielding, and a run waits a few loop turns before it starts, so a `cancel` that arrives with
its `req` or just behind it (a node that was paused while the hub gave up: the hub writes the
`cancel` before it answers 504) finds the run not started and stops it before it ever runs.
A run that has started finishes: its answer is kept, and only the wait for it is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from paglets.remote.relay_frames import Cancel, Req
from paglets.runtime.relay_http import MUTATING, error_body, perform
from paglets.runtime.relay_link import Incoming, RelayLink

if TYPE_CHECKING:
    from paglets.runtime.relay_node import RelayNode

__all__ = ["KEEP_SECONDS", "Deliveries", "DeliveryStore", "Run"]

KEEP_SECONDS = 600.0
START_YIELDS = 4  # loop turns a run waits before it starts (see `_execute`)

Answer = tuple[int, list[tuple[str, str]], Any]


class Run:
    """One execution of a request; redeliveries of a keyed request share it."""

    __slots__ = ("delivery_id", "started", "task", "waiters")

    def __init__(self, delivery_id: str) -> None:
        self.delivery_id = delivery_id
        self.started = False
        self.waiters = 0
        self.task: asyncio.Task[Answer] | None = None


class DeliveryStore:
    """`delivery_id → run` for keyed mutating requests, evicted by age only (10 min)."""

    def __init__(self, keep: float = KEEP_SECONDS) -> None:
        self.keep = keep
        self._runs: dict[str, Run] = {}
        self._order: deque[tuple[float, Run]] = deque()

    def get(self, delivery_id: str) -> Run | None:
        now = time.monotonic()
        order = self._order
        while order and now - order[0][0] > self.keep:
            self.drop(order.popleft()[1])
        return self._runs.get(delivery_id)

    def put(self, run: Run) -> None:
        self._runs[run.delivery_id] = run
        self._order.append((time.monotonic(), run))

    def drop(self, run: Run) -> None:
        if self._runs.get(run.delivery_id) is run:
            del self._runs[run.delivery_id]

    def __len__(self) -> int:
        return len(self._runs)


class Deliveries:
    """The node's relayed requests: running, stored, and counted for diagnostics."""

    def __init__(self, node: RelayNode) -> None:
        self.node = node
        self.store = DeliveryStore()
        self.serving: dict[int, tuple[asyncio.Task[None], Run]] = {}
        self.executed = 0
        self.joined = 0
        self.cancelled_before_start = 0

    def serve(self, link: RelayLink, req: Req, body: Incoming | None) -> None:
        remember = req.keyed and req.method in MUTATING
        run = self.store.get(req.delivery_id) if remember else None
        if run is None:
            run = Run(req.delivery_id)
            run.task = link.spawn(self._execute(run, req, body, whole=remember))
            if remember:
                self.store.put(run)
        else:
            self.joined += 1
            if body is not None:
                link.spawn(_drain(body))  # the first delivery's body is the one that counts
        run.waiters += 1
        responder = link.spawn(self._answer(link, req.sid, run))
        self.serving[req.sid] = (responder, run)

    async def _execute(self, run: Run, req: Req, body: Incoming | None, whole: bool) -> Answer:
        # Let bytes already readable on the link be read first: a `cancel` that arrived
        # just behind its `req` then stops the run before it starts.
        for _ in range(START_YIELDS):
            await asyncio.sleep(0)
        run.started = True
        self.executed += 1
        node = self.node
        headers = {"X-Paglets-Relay-Delivery": run.delivery_id, **node.credentials()}
        session = node.client()
        return await perform(
            session,
            node.local_url,
            req,
            body,
            headers,
            timeout=None,
            whole=whole,
            ssl=node.local_ssl,
        )

    async def _answer(self, link: RelayLink, sid: int, run: Run) -> None:
        assert run.task is not None
        try:
            try:
                status, headers, body = await asyncio.shield(run.task)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.store.drop(run)  # it did not run to completion here: a retry may run it
                name = self.node.host.name
                status, headers = 502, [("Content-Type", "application/json")]
                body = error_body(
                    f"relay node {name!r} could not serve the request on its own port: {exc}",
                    code="relay-node-error",
                    status=502,
                    error_type="RemoteHostError",
                    host_name=name,
                )
            with contextlib.suppress(ConnectionError):
                await link.respond(sid, status, headers, body)
        finally:
            run.waiters -= 1
            self.serving.pop(sid, None)

    def cancel(self, link: RelayLink, frame: Cancel) -> None:
        entry = self.serving.pop(frame.sid, None)
        if entry is None:
            return
        responder, run = entry
        responder.cancel()
        if not run.started and run.waiters <= 1 and run.task is not None:
            run.task.cancel()
            self.store.drop(run)
            self.cancelled_before_start += 1

    def describe(self) -> dict[str, int]:
        return {
            "serving": len(self.serving),
            "stored_deliveries": len(self.store),
            "executed": self.executed,
            "joined": self.joined,
            "cancelled_before_start": self.cancelled_before_start,
        }


async def _drain(body: Incoming) -> None:
    with contextlib.suppress(Exception):
        async for _ in body.chunks():
            pass
