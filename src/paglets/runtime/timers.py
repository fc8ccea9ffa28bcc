"""The host's clock work: periodic checkpoints and timed activations, driven by the event
loop and carried out on the worker pool (the loop never runs blocking code)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paglets.runtime.host import Host

log = logging.getLogger("paglets.timers")

__all__ = ["Timers"]

TICK = 0.1  # how often due activations are looked at (cheap: one float compare)
BACKOFF_MIN, BACKOFF_MAX = 1.0, 300.0


class Timers:
    def __init__(self, host: Host, checkpoint_interval: float) -> None:
        self.host = host
        self.checkpoint_interval = checkpoint_interval
        self._next_activation: float | None = None
        self._next_checkpoint = 0.0
        self._busy = False
        self._transfers_busy = False
        self._backoff: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._next_activation = self.host.store.next_activation_at()
        self._next_checkpoint = time.monotonic() + self.checkpoint_interval
        asyncio.run_coroutine_threadsafe(self._start_task(), loop).result(5)

    async def _start_task(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        task = self._task
        if task is None:
            return
        loop = task.get_loop()

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel(), loop).result(5)

    def activation_due(self, at: float) -> None:
        """A paglet was stored with `activate_at`; make sure the clock looks then."""
        current = self._next_activation
        if current is None or at < current:
            self._next_activation = at

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            if self._busy:
                continue
            if self.host.store.pending_commit:
                self._submit(self.host.store.commit)
            if not self._transfers_busy and time.time() >= self.host.transfers.next_tick:
                self._transfers_busy = True
                self._submit(self._transfer_work)
            due_checkpoint = time.monotonic() >= self._next_checkpoint
            next_activation = self._next_activation
            due_activation = next_activation is not None and time.time() >= next_activation
            if due_checkpoint or due_activation:
                self._busy = True
                self._submit(self._work, due_checkpoint, due_activation)

    def _submit(self, fn: Any, *args: Any) -> None:
        try:
            self.host.pool.submit(fn, *args)
        except RuntimeError:  # pool closed: the host is stopping
            self._busy = False

    def _transfer_work(self) -> None:
        try:
            self.host.transfers.tick()
        except Exception:
            log.exception("transfer timer failed")
        finally:
            self._transfers_busy = False

    def _work(self, checkpoint: bool, activation: bool) -> None:
        try:
            if checkpoint:
                self._next_checkpoint = time.monotonic() + self.checkpoint_interval
                self.host.checkpoints.flush()
                self.host.store.checkpoint_wal()
            if activation:
                self._activate_due()
        except Exception:
            log.exception("timer work failed")
        finally:
            self._busy = False

    def _activate_due(self) -> None:
        host = self.host
        now = time.time()
        for agent_id, _at in host.store.due_activations(now):
            try:
                host.activate(agent_id)
                self._backoff.pop(agent_id, None)
            except Exception as exc:
                delay = min(BACKOFF_MAX, max(BACKOFF_MIN, self._backoff.get(agent_id, 0.0) * 5))
                self._backoff[agent_id] = delay
                row = host.store.get_agent(agent_id)
                if row is not None and row.status == "inactive":
                    row.activate_at = now + delay
                    host.store.put_agent(row)
                log.warning(
                    "timed activation of %s failed (%s); retrying in %.0fs", agent_id, exc, delay
                )
        self._next_activation = host.store.next_activation_at()
