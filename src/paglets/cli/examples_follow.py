"""Running one streamed example from the command line (cli.md §8): create its driver
(`paglets.examples.runner.ExampleDriver`) on the entry host, start it, follow the entry
host's event stream for its job over SSE (`/events/stream?job=<job id>`), print the
example's output lines as they arrive, and return the final outcome.

`--detach` prints `submitted <job id> on <entry>` and returns at once; the driver still
ends (and cleans up) by its timeout. After following, the driver is disposed if it is
still there (it disposes itself normally), so a Ctrl-C or a lost stream leaves nothing.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import typer

from paglets.cli.errors import EXIT_FAILED, CliError
from paglets.cli.session import Session, print_json

__all__ = ["ExampleOutcome", "finish", "run_streamed_example"]

FINISH_GRACE = 15.0  # seconds after the timeout to wait for the driver's final event
STATE_CLASS = "paglets.examples.runner:ExampleState"


class _Done(Exception):
    """The driver's final event arrived."""


@dataclass
class ExampleOutcome:
    """What the follower saw."""

    job_id: str
    lines: list[str] = field(default_factory=list)
    finished: dict[str, Any] | None = None
    seconds: float = 0.0
    detached: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.finished and self.finished.get("ok"))

    @property
    def result(self) -> dict[str, Any]:
        return dict((self.finished or {}).get("result") or {})


def run_streamed_example(
    session: Session,
    driver_class: str,
    *,
    name: str,
    options: dict[str, Any],
    timeout: float,
    detach: bool = False,
    echo: bool = True,
    on_line: Callable[[str], None] | None = None,
) -> ExampleOutcome:
    """Run the example whose driver is `driver_class` (`module:qualname`); `echo` prints
    each output line on stdout as it arrives (else only `on_line` sees it)."""
    from paglets.cli.events import EventLog, SseReader
    from paglets.core.messages import Message

    if timeout <= 0:
        raise CliError("--timeout: must be more than 0 seconds")
    job_id = f"example-{name}-{uuid.uuid4().hex[:10]}"
    outcome = ExampleOutcome(job_id=job_id, detached=detach)
    since = 0 if detach else EventLog(session, session.entry).last_id()
    client = session.client
    state = {"job_id": job_id, "timeout": timeout, "options": options}
    session.call(
        lambda: client.create_agent(
            session.entry, driver_class, STATE_CLASS, state, agent_id=job_id
        )
    )
    try:
        session.call(lambda: client.send_message(session.entry, job_id, Message("start")))
    except BaseException:
        _dispose(session, job_id)
        raise
    if detach:
        print(f"submitted {job_id} on {session.entry}")
        return outcome
    began = time.time()
    deadline = began + timeout + FINISH_GRACE
    expired = threading.Event()

    def emit(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        kind = event.get("kind")
        if kind == "user-info.stream":
            for line in str(data.get("text") or "").splitlines():
                outcome.lines.append(line)
                if on_line is not None:
                    on_line(line)
                if echo:
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
        elif kind == "user-info.notify":
            meta = data.get("metadata") or {}
            if meta.get("example") == "finished":
                outcome.finished = meta
                raise _Done

    class Reader(SseReader):
        def _connect(self) -> Any:
            if expired.is_set():
                raise _Done
            return super()._connect()

    reader = Reader(session, session.entry, {"job": job_id}, since, emit)

    def expire() -> None:
        expired.set()
        reader.close()

    timer = threading.Timer(max(0.0, deadline - time.time()), expire)
    timer.daemon = True
    timer.start()
    try:
        reader.run()
    except _Done:
        pass
    finally:
        timer.cancel()
        reader.close()
        outcome.seconds = time.time() - began
        _dispose(session, job_id)
    return outcome


def _dispose(session: Session, job_id: str) -> None:
    """The driver disposes itself when it ends; this covers a stream that ended early."""
    try:
        session.client.dispose(session.entry, job_id, timeout=session.timeout)
    except Exception:
        pass  # gone already: the usual case


def finish(session: Session, name: str, outcome: ExampleOutcome, doc: dict[str, Any]) -> None:
    """Print the JSON document (with `--json`) or the failure, and exit 1 unless ok."""
    if outcome.detached:
        return
    if session.json:
        print_json(
            {
                "ok": outcome.ok,
                "job_id": outcome.job_id,
                "seconds": round(outcome.seconds, 3),
                "error": None if outcome.ok else _error(outcome),
                **doc,
            }
        )
    if not outcome.ok:
        session.info(f"paglets examples {name}: {_error(outcome)}", with_json=True)
        raise typer.Exit(EXIT_FAILED)


def _error(outcome: ExampleOutcome) -> str:
    if outcome.finished is None:
        return (
            f"no final report from the entry host within {outcome.seconds:.0f}s "
            f"(job {outcome.job_id})"
        )
    return str(outcome.finished.get("error") or "the example failed")
