"""The driver every streamed example of `paglets examples` builds on (jobs.md §7, cli.md §8).

An example's driver paglet is created on the entry host with `agent_id` = the example's
job id and sent `"start"`. Its `run()` thread then runs `run_example()` under the
example's deadline. Whatever it wants the user to see it writes with `say()`: each line
becomes a `user-info.stream` event (stream `<job id>`, tagged with the job) in the entry
host's durable event log, which the CLI follows over SSE, as `paglets search` does. At the
end one `user-info.notify` event with `metadata["example"] == "finished"` carries the
outcome (`ok`, `error`, and what the example put in `result`).

Everything an example makes is disposed: paglets it created are registered with
`track()` and disposed at the end (also after a failure or the timeout), then the driver
disposes itself. A driver never started (its client died) disposes itself after
`START_GRACE` seconds.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from paglets import Message, Paglet
from paglets.core.agent import PagletState
from paglets.core.errors import PagletError

__all__ = [
    "FINISHED",
    "START_GRACE",
    "ExampleDriver",
    "ExampleState",
    "ExampleTimeout",
]

FINISHED = "finished"
START_GRACE = 60.0


class ExampleTimeout(PagletError):
    """The example's `--timeout` passed before it finished."""


@dataclass
class ExampleState(PagletState):
    """The request and the driver's book-keeping."""

    job_id: str = ""
    timeout: float = 60.0
    options: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    started: bool = False
    deadline: float = 0.0
    finished: bool = False
    # [host_url, agent_id] of every paglet the example made, disposed at the end
    created: list[list[str]] = field(default_factory=list)
    # what helpers reported back, by key (each example decides the keys)
    reports: dict[str, Any] = field(default_factory=dict)


class ExampleDriver(Paglet[ExampleState]):
    """Base class: override `run_example()` (and `handle_example_message()` for the
    messages its helpers send back)."""

    State = ExampleState

    def on_creation(self, event: Any) -> None:
        if not self.state.created_at:
            self.state.created_at = time.time()

    def on_disposing(self, event: Any) -> None:
        # Disposed before the end (the CLI was interrupted): what it made goes too. A
        # thread, so this hook does not wait for other hosts.
        if self.state.created:
            proxies = self._tracked_proxies()
            threading.Thread(
                target=_dispose_all, args=(proxies,), daemon=True, name="example-cleanup"
            ).start()

    # -- messages ---------------------------------------------------------------------------

    def handle_message(self, message: Message) -> Any:
        kind = message.kind
        if kind == "start":
            with self.locked_state() as s:
                if not s.started:
                    s.started = True
                    s.deadline = time.time() + max(0.1, s.timeout)
            self.notify_all_state_changed()
            return {"job_id": self.state.job_id, "deadline": self.state.deadline}
        if kind == "report":  # a helper's report: kept under its key, wakes the driver
            key = str(message.get_arg("key", ""))
            with self.locked_state() as s:
                s.reports[key] = message.get_arg("value")
            self.notify_all_state_changed()
            return True
        if kind == "status":
            state = self.state
            return {"job_id": state.job_id, "started": state.started, "finished": state.finished}
        reply = self.handle_example_message(message)
        return self.not_handled() if reply is None else reply

    def handle_example_message(self, message: Message) -> Any:
        """Messages of one example; None for unknown kinds."""
        return None

    # -- what an example uses ---------------------------------------------------------------

    @property
    def options(self) -> dict[str, Any]:
        return self.state.options

    def remaining(self) -> float:
        """Seconds left before the deadline (raises `ExampleTimeout` when none are)."""
        left = self.state.deadline - time.time()
        if left <= 0:
            raise ExampleTimeout(f"the example did not finish within {self.state.timeout:g}s")
        return left

    def say(self, text: str) -> None:
        """One line of output for the user (a `user-info.stream` event)."""
        self._stream(text if text.endswith("\n") else text + "\n")

    def track(self, host_url: str, agent_id: str) -> None:
        """Dispose this paglet at the end of the example."""
        with self.locked_state() as s:
            if [host_url, agent_id] not in s.created:
                s.created.append([host_url, agent_id])

    def track_everywhere(self, agent_id: str) -> None:
        """Dispose this moving paglet at the end wherever it is: on every online host
        (a host where it is not answers "not found", which is fine)."""
        for host in self.hosts():
            self.track(host.url, agent_id)

    def untrack(self, agent_id: str) -> None:
        """The paglet is gone (it disposed itself): nothing to clean up."""
        with self.locked_state() as s:
            s.created = [c for c in s.created if c[1] != agent_id]

    def wait_report(self, key: str, timeout: float | None = None) -> Any:
        """Wait for the helper report `key` (sent as `"report"` `{key, value}`)."""
        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        if not self.wait_state(lambda s: key in s.reports, timeout=limit):
            self.remaining()  # raises at the deadline
            raise ExampleTimeout(f"no report {key!r} within {limit:.1f}s")
        return self.state.reports[key]

    def hosts(self, *, include_self: bool = True) -> list[Any]:
        """The online members (`HostRef`s), this host first, then by name."""
        rows = self.context.available_hosts(online_only=True, include_self=include_self)
        me = self.context.address.rstrip("/")
        return sorted(rows, key=lambda h: (h.url.rstrip("/") != me, h.name))

    def run_example(self) -> dict[str, Any] | None:
        """The example; its return value is the `result` of the final event."""
        raise NotImplementedError

    # -- the run thread ---------------------------------------------------------------------

    def run(self) -> None:
        state = self.state
        if state.finished:
            self._dispose_quietly()
            return
        started = self.wait_state(
            lambda s: s.started, timeout=max(0.0, state.created_at + START_GRACE - time.time())
        )
        if not started:
            self._cleanup()
            self._dispose_quietly()
            return
        outcome: dict[str, Any] = {"example": FINISHED, "ok": True}
        try:
            outcome["result"] = self.run_example() or {}
        except ExampleTimeout as exc:
            outcome.update(ok=False, error=str(exc), timed_out=True)
        except Exception as exc:
            outcome.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            outcome["traceback"] = traceback.format_exc(limit=8)
        outcome["cleanup_errors"] = self._cleanup()
        with self.locked_state() as s:
            s.finished = True
        try:
            self._notice(outcome)
        finally:
            self._dispose_quietly()

    def _cleanup(self) -> list[str]:
        """Dispose every tracked paglet, in parallel; a paglet already gone is fine."""
        proxies = self._tracked_proxies()
        with self.locked_state() as s:
            s.created = []
        return _dispose_all(proxies)

    def _tracked_proxies(self) -> list[Any]:
        proxies = []
        for url, agent_id in [tuple(c) for c in self.state.created]:
            proxy = self.context.get_proxy(agent_id, host_url=url)
            if proxy is not None:
                proxies.append(proxy)
        return proxies

    def _dispose_quietly(self) -> None:
        try:
            self.dispose()
        except PagletError:
            pass  # already gone

    def _stream(self, text: str) -> None:
        from paglets.system.user_info.contract import STREAM, USER_INFO, UserInfoStreamRequest

        handle = self.require_contract(USER_INFO, operation=STREAM)
        handle.call(
            STREAM,
            UserInfoStreamRequest(
                stream_id=self.state.job_id,
                text=text,
                job_id=self.state.job_id,
                source_agent_id=self.agent_id,
            ),
        )

    def _notice(self, outcome: dict[str, Any]) -> None:
        from paglets.system.user_info.contract import NOTIFY, USER_INFO, UserInfoRequest

        handle = self.require_contract(USER_INFO, operation=NOTIFY)
        handle.call(
            NOTIFY,
            UserInfoRequest(
                severity="info" if outcome.get("ok") else "warning",
                title="example finished",
                message="ok" if outcome.get("ok") else str(outcome.get("error", "failed")),
                job_id=self.state.job_id,
                source_agent_id=self.agent_id,
                metadata=outcome,
            ),
        )


def _dispose_all(proxies: list[Any]) -> list[str]:
    """Dispose these paglets in parallel; one that is gone already is fine."""
    from paglets.core.errors import InvalidAgentError

    errors: list[str] = []

    def dispose(proxy: Any) -> None:
        try:
            proxy.dispose()
        except InvalidAgentError:
            pass  # gone already (it disposed itself)
        except Exception as exc:
            where = f"{proxy.get_agent_id()} on {proxy.get_address()}"
            errors.append(f"{where}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=dispose, args=(p,), daemon=True) for p in proxies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15.0)
    return errors
