"""`paglets events`: the entry host's durable event log, as a table or followed live
(cli.md section 9, network.md 1.7 to 1.9).

Without `--follow` it prints the last `--limit` events (or, with `--since`, the events
after that point) from `GET /events`. The log is paged by event id only, oldest first,
so "the last N" and "since 10 minutes ago" are found by a galloping search over ids
(about 2·log2(N) one-event probes), never by reading the whole log.

With `--follow` it reads the SSE stream (`GET /events/stream`), one line per event. After a
dropped connection (a restarted host, a proxy timeout) it reconnects with `Last-Event-ID`,
so no event is lost or shown twice; event ids survive host restarts. Ctrl-C ends it with
exit 130 (cli.md 0.5).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import typer

from paglets.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, CliError
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Session,
    Timeout,
    open_session,
    print_json_line,
    short_id,
    table,
)
from paglets.cli.values import ValueFormatError, option, parse_int, parse_time
from paglets.core.errors import PagletError

__all__ = ["EventLog", "SseReader", "app"]

PAGE_MAX = 1000  # the server's page maximum
READ_TIMEOUT = 45.0  # the host pings every 15 s: three missed pings mean a dead stream
RECONNECT_FIRST = 0.2
RECONNECT_MAX = 5.0
DETAIL_WIDTH = 80
_EVENT_ID = re.compile(r"^\d+$")
_EPOCH_FLOOR = 1e9  # parse_time's rule: a bare number this large is a moment

app = typer.Typer(
    name="events",
    help="The entry host's event log: recent events, or followed live (--follow).",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

Event = dict[str, Any]


# -- the log over GET /events ---------------------------------------------------------------


class EventLog:
    """One host's event log as the CLI reads it: filtered pages, and id searches."""

    def __init__(
        self,
        session: Session,
        url: str,
        *,
        kinds: list[str] | None = None,
        agent_id: str | None = None,
        job: str | None = None,
    ) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.filters: dict[str, Any] = {}
        if kinds:
            self.filters["kind"] = ",".join(kinds)
        if agent_id:
            self.filters["agent_id"] = agent_id
        if job:
            self.filters["job"] = job

    def _get(self, since: int, limit: int, filtered: bool) -> tuple[list[Event], int]:
        query = {"since": since, "limit": limit, **(self.filters if filtered else {})}
        answer = self.session.call(
            lambda: self.session.client.get_json(f"{self.url}/events?{urlencode(query)}")
        )
        events = [e for e in (answer or {}).get("events") or () if isinstance(e, dict)]
        last = (answer or {}).get("last_event_id")
        return events, int(last) if isinstance(last, int) else since

    def page(self, since: int, limit: int = PAGE_MAX) -> tuple[list[Event], int]:
        """Up to `limit` matching events after `since`, and the last id the host scanned."""
        return self._get(since, limit, True)

    def first_after(self, since: int) -> Event | None:
        """The first event (any kind) after id `since`."""
        events, _ = self._get(since, 1, False)
        return events[0] if events else None

    def last_id(self) -> int:
        """The newest event id (0: an empty log): gallop up, then bisect. Each probe asks
        for the first event after an id; every answer is an id that exists."""
        first = self.first_after(0)
        if first is None:
            return 0
        low = int(first["event_id"])  # an id that exists
        step = 1
        while True:  # gallop: find `high` with no event after it
            probe = self.first_after(low + step)
            if probe is None:
                high = low + step
                break
            low = int(probe["event_id"])
            step *= 2
        while low < high:  # invariant: `low` exists, nothing lies after `high`
            middle = (low + high) // 2
            probe = self.first_after(middle)
            if probe is None:
                high = middle
            else:
                low = int(probe["event_id"])
        return low

    def id_at(self, moment: float) -> int:
        """The id after which every event is at or after `moment` (timestamps follow ids)."""
        low, high = 0, self.last_id()
        while low < high:
            middle = (low + high) // 2
            probe = self.first_after(middle)
            if probe is None or float(probe.get("timestamp") or 0) >= moment:
                high = middle
            else:
                low = int(probe["event_id"])
        return low

    def after(self, since: int, limit: int) -> tuple[list[Event], bool]:
        """The first `limit` matching events after `since`, and whether more follow."""
        out: list[Event] = []
        while len(out) <= limit:  # one more than asked: whether more follow
            events, last = self.page(since, min(PAGE_MAX, limit + 1 - len(out)))
            if not events:
                break
            out.extend(events)
            since = max(last, int(events[-1]["event_id"]))
        return out[:limit], len(out) > limit

    def tail(self, limit: int) -> list[Event]:
        """The last `limit` matching events, oldest first: windows of ids growing back
        from the newest until enough match or the log's start is reached."""
        end = self.last_id()
        if end == 0:
            return []
        found: list[Event] = []
        window = max(limit, PAGE_MAX)
        upper = end
        while True:
            lower = max(0, upper - window)
            found = self._window(lower, upper) + found
            if len(found) >= limit or lower == 0:
                return found[-limit:]
            upper = lower
            window *= 4

    def _window(self, lower: int, upper: int) -> list[Event]:
        out: list[Event] = []
        since = lower
        while since < upper:
            events, last = self.page(since)
            inside = [e for e in events if int(e["event_id"]) <= upper]
            out.extend(inside)
            if len(inside) < len(events) or not events:
                break
            since = max(last, int(events[-1]["event_id"]))
        return out


# -- the SSE stream -------------------------------------------------------------------------


class SseReader:
    """Reads `GET /events/stream` and hands each event to `emit`, resuming after drops.

    `since` is the id to start after; `last_id` is the newest id handed out so far (the
    `Last-Event-ID` of the next connection).
    """

    def __init__(
        self,
        session: Session,
        url: str,
        filters: dict[str, Any],
        since: int,
        emit: Callable[[Event], None],
    ) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.filters = filters
        self.last_id = since
        self.emit = emit
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPResponse:
        parts = urlsplit(self.url)
        host = parts.hostname or "127.0.0.1"
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host,
                parts.port or 443,
                timeout=self.session.timeout,
                context=self.session.ssl_context(),
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port or 80, timeout=self.session.timeout)
        self._conn = conn
        headers = {
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Paglets-Protocol": "1",
            "Last-Event-ID": str(self.last_id),
        }
        if self.session.api_key:
            headers["Authorization"] = f"Bearer {self.session.api_key}"
        query = f"?{urlencode(self.filters)}" if self.filters else ""
        conn.request("GET", f"{parts.path.rstrip('/')}/events/stream{query}", headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            body = response.read(4096)
            conn.close()
            raise self._refusal(response.status, body)
        if conn.sock is not None:
            conn.sock.settimeout(READ_TIMEOUT)
        return response

    def _refusal(self, status: int, body: bytes) -> CliError:
        from paglets.core.errors import error_from_wire

        try:
            wire = json.loads(body)
        except ValueError:
            wire = None
        if isinstance(wire, dict) and wire.get("error_type"):
            return self.session.fail(error_from_wire(wire))
        text = body.decode("utf-8", "replace").strip()[:200] or "(empty body)"
        return CliError(f"{self.url}/events/stream answered HTTP {status}: {text}", code=1)

    def _pump(self, response: http.client.HTTPResponse) -> None:
        event_id: str | None = None
        data: list[str] = []
        for raw in response:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if data:
                    self._dispatch(event_id, "\n".join(data))
                event_id, data = None, []
                continue
            if line.startswith(":"):
                continue  # a comment: the opening line and the 15 s pings
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                event_id = value
            elif name == "data":
                data.append(value)

    def _dispatch(self, event_id: str | None, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            return  # not ours to show; the id still moves on below
        if event_id is not None and _EVENT_ID.match(event_id):
            number = int(event_id)
            if number <= self.last_id:
                return  # already shown before a reconnect
            self.last_id = number
        if isinstance(event, dict):
            self.emit(event)

    def run(self) -> None:
        """Follow until interrupted. Failing to connect the first time is an error;
        afterwards a lost stream is retried with back-off."""
        delay = RECONNECT_FIRST
        connected = False
        lost_reported = False
        while True:
            try:
                response = self._connect()
            except CliError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                if not connected:
                    raise CliError(
                        f"no paglets host at {self.url} ({_reason(exc)})",
                        hint='start one with "paglets host --name NAME", or pass --entry URL',
                    ) from None
                time.sleep(delay)
                delay = min(RECONNECT_MAX, delay * 2)
                continue
            connected = True
            if lost_reported:
                self.session.info(
                    f"paglets events: reconnected, after event {self.last_id}", with_json=True
                )
                lost_reported = False
            delay = RECONNECT_FIRST
            try:
                self._pump(response)
                reason = "the host closed the stream"
            except (OSError, http.client.HTTPException) as exc:
                reason = _reason(exc)
            finally:
                self.close()
            if not lost_reported:
                self.session.info(
                    f"paglets events: stream from {self.url} lost ({reason}); "
                    f"reconnecting from event {self.last_id}",
                    with_json=True,
                )
                lost_reported = True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no data for {READ_TIMEOUT:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# -- printing -------------------------------------------------------------------------------


def _when(timestamp: Any, *, day: bool) -> str:
    if not isinstance(timestamp, int | float):
        return "-"
    moment = time.localtime(timestamp)
    millis = int((timestamp % 1) * 1000)
    clock = time.strftime("%H:%M:%S", moment) + f".{millis:03d}"
    return time.strftime("%Y-%m-%d ", moment) + clock if day else clock


def _detail(event: Event) -> str:
    if event.get("error"):
        text = f"error: {event['error']}"
    else:
        data = event.get("data") or {}
        parts = [f"{k}={v}" for k, v in data.items()] if isinstance(data, dict) else []
        if event.get("service_name"):
            parts.insert(0, f"service={event['service_name']}")
        if event.get("class_name"):
            parts.insert(0, str(event["class_name"]).rpartition(":")[2])
        text = " ".join(parts)
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_WIDTH else text[: DETAIL_WIDTH - 1] + "…"


def _line(event: Event) -> str:
    return " ".join(
        (
            _when(event.get("timestamp"), day=False),
            str(event.get("host_name") or "-"),
            str(event.get("kind") or "-"),
            short_id(event.get("agent_id")),
            _detail(event),
        )
    ).rstrip()


# -- the command ----------------------------------------------------------------------------


def _since_value(text: str) -> tuple[int | None, float | None]:
    """`--since`: an event id (a whole number below 1e9), else a time (cli.md 0.6)."""
    raw = text.strip()
    if _EVENT_ID.match(raw) and int(raw) < _EPOCH_FLOOR:
        return int(raw), None
    try:
        return None, parse_time(raw, now=time.time())
    except ValueFormatError:
        raise CliError(
            f'--since: cannot read "{text}" as an event id or a time '
            "(examples: 1200, 10m, 2024-05-01T12:00:00Z, 1714564800)"
        ) from None


@app.command()
def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print events as they happen (Ctrl-C ends).")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="ID|TIME",
            help="After this event id, or since this time (10m, ISO 8601, epoch seconds).",
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", metavar="KIND", help="Only this kind (repeatable)."),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="ID", help="Only this paglet's events.")
    ] = None,
    job: Annotated[
        str | None, typer.Option("--job", metavar="JOB", help="Only events tagged with this job.")
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            parser=option(lambda t: parse_int(t, low=1, what="--limit")),
            help="At most this many events (without --follow).",
        ),
    ] = 100,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Recent events (time, host, kind, agent, detail), or --follow them live."""
    since_id, since_time = (None, None) if since is None else _since_value(since)
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    agent_id = None
    if agent is not None:
        from paglets.cli.agents import resolve_agent

        agent_id = resolve_agent(session, agent).agent_id
    kinds = [k for item in kind or () for k in item.split(",") if k.strip()]
    log = EventLog(session, session.entry, kinds=kinds, agent_id=agent_id, job=job)
    start = since_id
    if since_time is not None:
        start = log.id_at(since_time)
    if follow:
        _follow(session, log, start)
        return
    more = False
    if start is None:
        found = log.tail(limit)
    else:
        found, more = log.after(start, limit)
    if json_:
        for event in found:
            print_json_line(event)
    elif found:
        table(
            "Events",
            ["time", "host", "kind", "agent", "detail"],
            [
                [
                    _when(e.get("timestamp"), day=True),
                    str(e.get("host_name") or "-"),
                    str(e.get("kind") or "-"),
                    short_id(e.get("agent_id")),
                    _detail(e) or "-",
                ]
                for e in found
            ],
        )
    else:
        print("No events.")
    if more and found:
        session.info(f"more events follow: --since {found[-1]['event_id']}")
    if not found:
        raise typer.Exit(EXIT_FAILED)


def _follow(session: Session, log: EventLog, start: int | None) -> None:
    if start is None:
        start = log.last_id()  # live from now, but resumable after a drop
    out = sys.stdout

    def emit(event: Event) -> None:
        if session.json:
            print_json_line(event)
        else:
            out.write(_line(event) + "\n")
            out.flush()

    reader = SseReader(session, log.url, log.filters, start, emit)
    session.info(
        f"following events at {log.url} after event {start} (Ctrl-C to stop)", with_json=True
    )
    try:
        reader.run()
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except PagletError as exc:
        raise session.fail(exc) from exc
    finally:
        reader.close()
