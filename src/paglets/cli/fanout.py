"""Calling a host's system service from the CLI, and doing it on many hosts at once.

`call_service` sends one typed operation to the provider at its fixed id
(`service.<contract>`) on a host; a lazy provider that has never run there is started
(`POST /services/resident/ensure`) and asked again. `fan_out` calls every target host in
parallel under **one** deadline and returns what arrived: answers, the hosts that failed
with their error, and the hosts that stayed silent (cli.md §5, jobs.md §8: partial results,
silent hosts named; paglets 2.0 polled one host after another).

`fanout_targets` turns `--host` (names or URLs, repeatable) into the hosts to ask: by
default every alive, compatible member of the entry's membership view. `ask_service` is the
three together (targets, one operation on each, one deadline); `with_errors` and
`report_failures` are how a command shows the hosts that failed (`"errors"` in `--json`,
a table otherwise).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from paglets.cli.errors import CliError
from paglets.cli.session import Session, table
from paglets.core.errors import InvalidAgentError, PagletError, PagletTimeoutError
from paglets.services.contracts import ServiceContract, ServiceOperation

__all__ = [
    "FanOut",
    "HostFailure",
    "Hosts",
    "Target",
    "ask_service",
    "call_service",
    "fan_out",
    "fanout_targets",
    "failure_rows",
    "report_failures",
    "with_errors",
]

Hosts = Annotated[
    list[str] | None,
    typer.Option("--host", metavar="NAME|URL", help="Only these hosts (repeatable)."),
]


@dataclass(frozen=True, slots=True)
class Target:
    """A host to ask: its name and URL."""

    name: str
    url: str


@dataclass(frozen=True, slots=True)
class HostFailure:
    """A host that failed or stayed silent; `to_json()` is cli.md 0.4's error entry."""

    host: str
    url: str
    error_type: str
    error: str
    code: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "url": self.url,
            "error_type": self.error_type,
            "error": self.error,
            "code": self.code,
        }


@dataclass(slots=True)
class FanOut:
    """What a fan-out brought back, in target order."""

    answers: list[tuple[Target, Any]] = field(default_factory=list)
    failures: list[HostFailure] = field(default_factory=list)

    @property
    def silent(self) -> list[str]:
        return [f.host for f in self.failures if f.code == "no-answer"]


def call_service(
    session: Session,
    url: str,
    contract: ServiceContract,
    op: ServiceOperation[Any, Any],
    request: Any = None,
    *,
    timeout: float | None = None,
) -> Any:
    """The typed reply of `op` from `contract`'s provider on the host at `url`."""
    operation = contract.require_operation(op)
    agent_id = f"service.{contract.name}"
    message = operation.to_message(request)
    client = session.client
    wait = session.timeout if timeout is None else timeout
    try:
        answer = client.send_message(url, agent_id, message, timeout=wait)
    except InvalidAgentError:
        client.post_json(
            f"{url.rstrip('/')}/services/resident/ensure", {"agent_id": agent_id}, timeout=wait
        )
        answer = client.send_message(url, agent_id, message, timeout=wait)
    return operation.decode_reply(answer)


def _usable(member: dict[str, Any]) -> bool:
    """Alive and compatible (a `HostRef` of `GET /hosts`: `error` names an incompatibility
    or a suspicion)."""
    return bool(member.get("online", True)) and not member.get("error") and bool(member.get("url"))


def fanout_targets(session: Session, hosts: Sequence[str] | None) -> list[Target]:
    """The hosts a fan-out asks: `hosts` (names or URLs) or, when empty, every alive and
    compatible member of the entry's view (the entry first). An unknown name is exit 2
    listing the known ones; a named member that is not alive is still asked (and then
    reported as failed), so the user sees why."""
    members = session.members()  # GET /hosts: the entry first, also without a mesh
    if not hosts:
        out = [
            Target(str(m.get("name")), str(m.get("url")).rstrip("/")) for m in members if _usable(m)
        ]
        return out or [Target(session.entry, session.entry)]
    by_name = {str(m.get("name")): m for m in members}
    by_url = {str(m.get("url") or "").rstrip("/").lower(): m for m in members}
    out = []
    for item in hosts:
        if "://" in item:
            member = by_url.get(item.rstrip("/").lower())
            name = str(member.get("name")) if member else item.rstrip("/")
            target = Target(name, item.rstrip("/"))
        else:
            member = by_name.get(item)
            if member is None:
                known = ", ".join(sorted(by_name)) or "none"
                raise CliError(
                    f"--host: no host named {item!r} in the mesh of {session.entry} "
                    f"(known: {known})",
                    hint="pass a URL (http://HOST:PORT) or one of the known names",
                )
            target = Target(item, str(member.get("url")).rstrip("/"))
        if target not in out:
            out.append(target)
    return out


def _failure(target: Target, exc: BaseException) -> HostFailure:
    if isinstance(exc, PagletError):
        name = (exc.remote_type or "").rpartition(":")[2] or type(exc).__name__
        return HostFailure(target.name, target.url, name, str(exc) or name, exc.code or None)
    return HostFailure(target.name, target.url, type(exc).__name__, str(exc) or type(exc).__name__)


class _Progress:
    """`n/N hosts` on stderr while a fan-out runs (a terminal only, not --json/--quiet)."""

    def __init__(self, session: Session, total: int) -> None:
        self.enabled = sys.stderr.isatty() and not session.json and not session.quiet
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def step(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.done += 1
            sys.stderr.write(f"\r{self.done}/{self.total} hosts")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 24 + "\r")
            sys.stderr.flush()


def fan_out(
    session: Session,
    targets: Sequence[Target],
    call: Callable[[Target, float], Any],
    *,
    timeout: float,
) -> FanOut:
    """Run `call(target, remaining_seconds)` for every target in parallel; whatever has not
    answered when `timeout` seconds have passed is reported silent. Never raises for one
    host's failure. The calls run on daemon threads, so a silent host never keeps the
    command from exiting."""
    result = FanOut()
    if not targets:
        return result
    deadline = time.monotonic() + timeout
    progress = _Progress(session, len(targets))
    outcomes: dict[int, tuple[bool, Any]] = {}
    finished = threading.Condition()

    def one(index: int, target: Target) -> None:
        try:
            outcome: tuple[bool, Any] = (True, call(target, max(0.1, deadline - time.monotonic())))
        except BaseException as exc:  # reported per host
            outcome = (False, exc)
        progress.step()
        with finished:
            outcomes[index] = outcome
            finished.notify_all()

    for index, target in enumerate(targets):
        threading.Thread(
            target=one, args=(index, target), name=f"paglets-fanout-{index}", daemon=True
        ).start()
    with finished:
        finished.wait_for(
            lambda: len(outcomes) == len(targets), max(0.0, deadline - time.monotonic())
        )
        done = dict(outcomes)
    progress.close()
    for index, target in enumerate(targets):
        outcome = done.get(index)
        if outcome is None:
            result.failures.append(
                HostFailure(
                    target.name,
                    target.url,
                    PagletTimeoutError.__name__,
                    f"no answer within {timeout:g}s",
                    "no-answer",
                )
            )
        elif outcome[0]:
            result.answers.append((target, outcome[1]))
        else:
            result.failures.append(_failure(target, outcome[1]))
    return result


def failure_rows(failures: Sequence[HostFailure]) -> list[list[str]]:
    """The "Errors" table of a fan-out: host, error."""
    return [[f.host, f"{f.error_type}: {f.error}" if f.error_type else f.error] for f in failures]


def ask_service(
    session: Session,
    hosts: Sequence[str] | None,
    contract: ServiceContract,
    op: ServiceOperation[Any, Any],
    request: Any = None,
) -> FanOut:
    """`op(request)` on `contract`'s provider of every target host (`fanout_targets`), in
    parallel under the session's one `--timeout`."""
    return fan_out(
        session,
        fanout_targets(session, hosts),
        lambda t, left: call_service(session, t.url, contract, op, request, timeout=left),
        timeout=session.timeout,
    )


def with_errors(doc: dict[str, Any], failures: Sequence[HostFailure]) -> dict[str, Any]:
    """`doc` with `"errors"` (cli.md 0.4's entries) when some host failed."""
    if failures:
        doc["errors"] = [f.to_json() for f in failures]
    return doc


def report_failures(
    session: Session, failures: Sequence[HostFailure], title: str = "Hosts that did not answer"
) -> None:
    """Name the hosts that failed or stayed silent in a table (`--json` carries them in
    `"errors"` instead)."""
    if failures and not session.json:
        table(title, ("host", "error"), failure_rows(failures))
