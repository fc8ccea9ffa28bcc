"""`paglets agents`: list, inspect, create, message, move and dispose paglets (cli.md
section 2).

Every command talks to the entry host (`--entry`, `PAGLETS_ENTRY`, else
`http://127.0.0.1:8765`). An agent id may be any unique prefix of at least 6 characters:
it is resolved by listing the entry's paglets (then, if nothing there matches, the other
members'), an exact id always wins, and an ambiguous prefix is exit 2 with the candidates.
An id that no listing shows is used as given, so a paglet that moved away is still
reached through the entry's forwarding pointer (the client follows it, network.md 1.6).

`restart` brings a crashed paglet back from its last checkpoint; `resolve TID --keep-here |
--give-up` ends a transfer whose other host is gone for good (network.md 2.5; the host
refuses while that host answers).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED, EXIT_USAGE, CliError, print_error
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Session,
    Timeout,
    open_session,
    print_json,
    short_id,
    table,
)
from paglets.cli.values import (
    ValueFormatError,
    option,
    parse_choice,
    parse_duration,
    parse_int,
    parse_json_argument,
    parse_key_value,
    parse_time,
)
from paglets.core.errors import PagletError

if TYPE_CHECKING:
    from paglets.remote.client import HostClient
    from paglets.remote.transfer import TransferTicket

__all__ = ["MIN_PREFIX", "AgentRef", "app", "resolve_agent"]

MIN_PREFIX = 6  # cli.md 0.4: agent ids accept unique prefixes of at least 6 characters
PAGE = 1000  # the server's page maximum (network.md 1.4)
STATES = ("active", "inactive", "crashed", "superseded", "all")
# Undecided or unacknowledged (network.md 2.5): a source's PREPARING (undecided) and
# COMMITTED (the target has not acknowledged), a target's PREPARED (waiting for COMMIT).
OPEN_TRANSFERS = {
    "source": frozenset({"PREPARING", "COMMITTED"}),
    "target": frozenset({"PREPARED"}),
}
CANDIDATES_SHOWN = 10
REMOTE_FRAMES = 8  # lines of a handler's remote traceback shown by `send`
INFO_THREADS = 8

app = typer.Typer(
    name="agents",
    help="Paglets: list, inspect, create, message, move, deactivate and dispose them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

AgentId = Annotated[str, typer.Argument(metavar="ID", help="Agent id or unique prefix (6+).")]
Long = Annotated[bool, typer.Option("--long", help="Full ids and class names.")]
AllHosts = Annotated[bool, typer.Option("--all-hosts", help="Search every host of the mesh.")]


# -- agent ids ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentRef:
    """A resolved agent: its full id and the host to start calls at (calls follow moves)."""

    agent_id: str
    url: str


def _prefix_matches(session: Session, url: str, prefix: str) -> list[AgentRef]:
    """Every paglet on `url` whose id starts with `prefix` (all states, every page)."""
    client = session.client
    found: list[AgentRef] = []
    cursor: str | None = None
    while True:
        page = client.list_agents_page(url, state="all", q=prefix, limit=PAGE, cursor=cursor)
        for summary in page.get("agents") or ():
            agent_id = str(summary.get("agent_id") or "")
            if agent_id.startswith(prefix):
                found.append(AgentRef(agent_id, str(summary.get("address") or url).rstrip("/")))
        cursor = page.get("next_cursor")
        if not cursor or not page.get("agents"):
            return found


def resolve_agent(session: Session, text: str, *, all_hosts: bool = False) -> AgentRef:
    """The agent `text` names: an exact id, or a unique prefix of at least `MIN_PREFIX`
    characters (cli.md 0.4). Searched on the entry, then on the other members when the
    entry has no match (or on all of them with `all_hosts`)."""
    from paglets.core.ids import validate_agent_id

    session.call(lambda: validate_agent_id(text))
    urls = session.member_urls() if all_hosts else [session.entry]
    matches = _search(session, urls, text)
    if not matches and not all_hosts:
        others = session.member_urls()[1:]
        if others:
            matches = _search(session, others, text)
    exact = [m for m in matches if m.agent_id == text]
    if exact:
        return exact[0]
    unique = {m.agent_id: m for m in matches}
    if len(text) < MIN_PREFIX:
        if unique:
            raise CliError(
                f"agent id prefix {text!r} is too short: give at least {MIN_PREFIX} characters",
                hint="paglets agents ls --long shows full ids",
            )
        return AgentRef(text, urls[0])
    if len(unique) == 1:
        return next(iter(unique.values()))
    if len(unique) > 1:
        shown = sorted(unique)
        listed = ", ".join(shown[:CANDIDATES_SHOWN])
        more = f" and {len(shown) - CANDIDATES_SHOWN} more" if len(shown) > CANDIDATES_SHOWN else ""
        raise CliError(
            f"agent id prefix {text!r} is ambiguous: {len(shown)} paglets match ({listed}{more})",
            hint="give more characters of the id",
        )
    # Nothing listed: use it as a full id; a paglet that moved away is reached through the
    # entry's forwarding pointer, and one that does not exist is the host's 404 (exit 1).
    return AgentRef(text, urls[0])


def _search(session: Session, urls: list[str], text: str) -> list[AgentRef]:
    if len(urls) == 1:
        return session.call(lambda: _prefix_matches(session, urls[0], text))
    out: list[AgentRef] = []
    with ThreadPoolExecutor(max_workers=min(INFO_THREADS, len(urls))) as pool:
        futures = [pool.submit(_prefix_matches, session, url, text) for url in urls]
        for url, future in zip(urls, futures, strict=True):
            try:
                out.extend(future.result())
            except PagletError as exc:
                if url == session.entry:
                    raise session.fail(exc) from exc
                # Another member that does not answer just has no candidates.
    return out


# -- small helpers --------------------------------------------------------------------------


def _state_of(summary: dict[str, Any]) -> str:
    state = summary.get("state")
    if isinstance(state, str) and state in STATES:
        return state
    if summary.get("active"):
        return "active"
    return "crashed" if summary.get("crashed") else "inactive"


def _class(name: Any, long: bool) -> str:
    text = str(name or "-")
    return text if long else text.rpartition(":")[2] or text


def _mailbox(info: dict[str, Any]) -> str:
    box = info.get("mailbox")
    if isinstance(box, dict):
        return f"{box.get('queued', 0)}/{box.get('in_flight', 0)}"
    held = info.get("queued_messages")
    return f"{held}/0" if isinstance(held, int) else "-"


def _since(info: dict[str, Any]) -> str:
    from paglets.cli.output import format_age

    moment = info.get("deactivated_at") if not info.get("active") else None
    moment = moment or info.get("created_at")
    return format_age(moment) if isinstance(moment, int | float) and moment else "-"


def _error(info: dict[str, Any], width: int = 60) -> str:
    text = info.get("error") or info.get("run_error") or ""
    text = " ".join(str(text).split())
    return (text[: width - 1] + "…") if len(text) > width else (text or "-")


def _enrich(session: Session, summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Full summaries (mailbox, times, errors) for listing rows that lack them."""
    client = session.client

    def one(summary: dict[str, Any]) -> dict[str, Any]:
        if "created_at" in summary:
            return summary
        url = str(summary.get("address") or session.entry)
        try:
            return {**summary, **client.agent_info(url, summary["agent_id"])}
        except PagletError:
            return summary  # gone between the listing and now: keep what the listing said

    if not summaries:
        return summaries
    with ThreadPoolExecutor(max_workers=min(INFO_THREADS, len(summaries))) as pool:
        return list(pool.map(one, summaries))


def _json_arg(text: str, what: str) -> Any:
    from paglets.serialization import codec

    try:
        return codec.restore_json_safe(parse_json_argument(text))
    except ValueFormatError as exc:
        raise CliError(f"{what}: {exc}") from None


def _ticket(
    target: str,
    ticket_timeout: float,
    retries: int,
    capabilities: list[str] | None,
    inactive: bool,
) -> TransferTicket:
    from paglets.core.runtime_values import ArrivalMode
    from paglets.remote.transfer import TransferTicket

    try:
        return TransferTicket(
            destination=target,
            timeout=ticket_timeout,
            retries=retries,
            required_capabilities=tuple(capabilities or ()),
            arrival_mode=ArrivalMode.INACTIVE if inactive else ArrivalMode.ACTIVATE,
        )
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None


def _epoch_at(session: Session, url: str, agent_id: str) -> int | None:
    try:
        answer = session.client.location(url, agent_id)
    except PagletError:
        return None
    epoch = answer.get("epoch") if isinstance(answer, dict) else None
    return epoch if isinstance(epoch, int) else None


def _wake_time(text: str) -> float:
    """`--at`: a duration counts from now (a wake-up lies ahead); ISO 8601 and epoch
    seconds are read by `parse_time` and must not be in the past."""
    now = time.time()
    try:
        is_epoch = float(text) >= 1e9  # parse_time's rule: such a number is a moment
    except ValueError:
        is_epoch = False
    if not is_epoch:
        try:
            return now + parse_duration(text)
        except ValueFormatError:
            pass
    moment = parse_time(text, now=now)
    if moment <= now:
        raise ValueFormatError(f'"{text}" is in the past: a wake-up time must lie ahead')
    return moment


def _age(moment: Any) -> str:
    from paglets.cli.output import format_age

    return format_age(moment) if isinstance(moment, int | float) and moment else "-"


# -- ls, info, state ------------------------------------------------------------------------


@app.command("ls")
def ls(
    state: Annotated[
        str,
        typer.Option(
            "--state",
            metavar="STATE",
            parser=option(lambda t: parse_choice(t, STATES)),
            help="active, inactive, crashed, superseded or all.",
        ),
    ] = "all",
    class_name: Annotated[
        str | None, typer.Option("--class", metavar="NAME", help="Class name ending (suffix).")
    ] = None,
    query: Annotated[
        str | None, typer.Option("--query", metavar="TEXT", help="Text in the id or class.")
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            parser=option(lambda t: parse_int(t, low=1, what="--limit")),
            help="At most this many rows.",
        ),
    ] = 100,
    all_hosts: AllHosts = False,
    long: Long = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """List paglets: agent, class, state, host, mailbox (queued/in flight), since, error."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    urls = session.member_urls() if all_hosts else [session.entry]
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for url in urls:
        if len(rows) >= limit:
            break
        try:
            rows.extend(_list_host(session, url, state, class_name, query, limit - len(rows)))
        except PagletError as exc:
            if url == session.entry:
                raise session.fail(exc) from exc
            errors.append(
                {"host": url, "error_type": type(exc).__name__, "error": str(exc), "code": exc.code}
            )
    rows = _enrich(session, rows)
    if json_:
        doc: dict[str, Any] = {"agents": rows}
        if errors:
            doc["errors"] = errors
        print_json(doc)
    elif rows:
        table(
            "Paglets",
            ["agent", "class", "state", "host", "mailbox", "since", "error"],
            [
                [
                    short_id(r.get("agent_id"), long),
                    _class(r.get("class_name"), long),
                    _state_of(r),
                    str(r.get("host") or r.get("address") or "-"),
                    _mailbox(r),
                    _since(r),
                    _error(r, 200 if long else 60),
                ]
                for r in rows
            ],
        )
    elif not errors:
        print("No paglets.")
    for error in errors if not json_ else ():
        sys.stderr.write(f"paglets agents ls: {error['host']}: {error['error']}\n")
    if errors or not rows:
        raise typer.Exit(EXIT_FAILED)


def _list_host(
    session: Session,
    url: str,
    state: str,
    class_name: str | None,
    query: str | None,
    wanted: int,
) -> list[dict[str, Any]]:
    """Up to `wanted` summaries from one host, paging through the server."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    page_size = min(PAGE, max(wanted, 1)) if not class_name else PAGE
    while len(out) < wanted:
        page = session.client.list_agents_page(
            url, state=state, q=query or class_name, limit=page_size, cursor=cursor
        )
        for summary in page.get("agents") or ():
            if class_name and not str(summary.get("class_name") or "").endswith(class_name):
                continue
            out.append(summary)
            if len(out) >= wanted:
                break
        cursor = page.get("next_cursor")
        if not cursor or not page.get("agents"):
            break
    return out


@app.command("info")
def info(
    agent: AgentId,
    all_hosts: AllHosts = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Summary, location (host, epoch, home), open transfer, mailbox and resources."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    ref = resolve_agent(session, agent, all_hosts=all_hosts)
    client = session.client
    summary = session.call(lambda: client.agent_info(ref.url, ref.agent_id))
    where = str(summary.get("address") or ref.url).rstrip("/")
    location = _optional(lambda: client.location(where, ref.agent_id))
    mailbox = _optional(lambda: client.mailbox(where, ref.agent_id))
    listing = _optional(lambda: client.get_json(f"{where}/transfers?agent_id={ref.agent_id}")) or {
        "transfers": []
    }
    transfers = [t for t in listing.get("transfers") or () if _is_open(t)]
    if json_:
        print_json(
            {"agent": summary, "location": location, "mailbox": mailbox, "transfers": transfers}
        )
        return
    box = mailbox or summary.get("mailbox") or {}
    lines: list[tuple[str, str]] = [
        ("agent", ref.agent_id),
        ("class", str(summary.get("class_name") or "-")),
        ("state class", str(summary.get("state_class_name") or "-")),
        ("state", _state_of(summary)),
        ("host", f"{summary.get('host') or '-'} ({where})"),
        ("epoch", str(summary.get("epoch", "-"))),
        ("home", str(summary.get("home_url") or "-")),
        ("isolation", str(summary.get("isolation") or "-")),
        ("created", _age(summary.get("created_at"))),
        ("checkpointed", _age(summary.get("checkpointed_at"))),
        (
            "mailbox",
            ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in box.items()) if box else "-",
        ),
        (
            "transfer",
            "; ".join(
                f"{t.get('transfer_id')} {t.get('role')} {t.get('kind')} {t.get('status')} "
                f"peer {t.get('peer_url')} since {_age(t.get('created_at'))}"
                for t in transfers
            )
            or "none",
        ),
    ]
    if summary.get("deactivated_at"):
        lines.append(("deactivated", _age(summary.get("deactivated_at"))))
    if summary.get("policy"):
        lines.append(("policy", str(summary["policy"])))
    if summary.get("resources"):
        lines.append(("resources", str(summary["resources"])))
    lines.append(("error", str(summary.get("error") or summary.get("run_error") or "-")))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")


def _is_open(record: dict[str, Any]) -> bool:
    return record.get("status") in OPEN_TRANSFERS.get(str(record.get("role")), ())


def _optional(fn: Any) -> Any:
    try:
        return fn()
    except PagletError:
        return None


@app.command("state")
def state(
    agent: AgentId,
    raw: Annotated[
        bool, typer.Option("--raw", help="The wire form: binary values as tagged base64.")
    ] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """The paglet's state as JSON."""
    import json

    from paglets.serialization import codec

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    ref = resolve_agent(session, agent)
    answer = session.call(lambda: session.client.agent_state(ref.url, ref.agent_id))
    value = answer.get("state")
    if json_:
        print_json(
            {
                "agent_id": ref.agent_id,
                "state": value,
                "state_class_name": answer.get("state_class_name"),
                "state_source": answer.get("state_source"),
            }
        )
        return
    if raw:
        text = json.dumps(codec.json_safe(value), sort_keys=True, indent=2)
    else:
        text = json.dumps(value, indent=2, default=_plain)
    sys.stdout.write(text + "\n")


def _plain(value: Any) -> Any:
    """Readable JSON for values JSON lacks: text bytes as text, other bytes as base64."""
    import base64

    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(data).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


# -- create, send ---------------------------------------------------------------------------


@app.command("create")
def create(
    class_name: Annotated[
        str, typer.Argument(metavar="CLASS", help="The paglet class, module:QualName.")
    ],
    state_arg: Annotated[
        str | None,
        typer.Option("--state", metavar="JSON|@FILE", help="Initial state (a JSON object)."),
    ] = None,
    init: Annotated[
        str | None, typer.Option("--init", metavar="JSON", help="Argument of on_creation.")
    ] = None,
    agent_id: Annotated[str | None, typer.Option("--id", metavar="ID", help="Its id.")] = None,
    host: Annotated[
        str | None, typer.Option("--host", metavar="NAME|URL", help="Create it there.")
    ] = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Create a paglet; prints its id and host."""
    if ":" not in class_name:
        raise CliError(
            f"CLASS {class_name!r} must be module:QualName",
            hint="e.g. paglets.examples.counter:Counter",
        )
    state_value = None if state_arg is None else _json_arg(state_arg, "--state")
    if state_value is not None and not isinstance(state_value, dict):
        raise CliError(
            f"--state: the state must be a JSON object, got {type(state_value).__name__}",
            hint="e.g. --state '{\"count\": 1}' or --state @state.json",
        )
    init_value = None if init is None else _json_arg(init, "--init")
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    url = session.host_url(host)
    proxy = session.call(
        lambda: session.client.create_agent(
            url, class_name, None, state_value, init=init_value, agent_id=agent_id
        )
    )
    if json_:
        print_json({"agent_id": proxy.agent_id, "host_url": proxy.host_url})
    else:
        print(f"created {proxy.agent_id} on {proxy.host_url}")


@app.command("send")
def send(
    agent: AgentId,
    kind: Annotated[str, typer.Argument(metavar="KIND", help="The message kind.")],
    arg: Annotated[
        str | None, typer.Option("--arg", metavar="JSON", help="The message's single argument.")
    ] = None,
    args: Annotated[
        str | None,
        typer.Option("--args", metavar="JSON|@FILE", help="Named arguments (a JSON object)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=JSON", help="One named argument (repeatable)."),
    ] = None,
    oneway: Annotated[bool, typer.Option("--oneway", help="Do not wait for a reply.")] = False,
    durable: Annotated[
        bool, typer.Option("--durable", help="Stored before it is accepted.")
    ] = False,
    no_activate: Annotated[
        bool, typer.Option("--no-activate", help="Do not wake an inactive paglet.")
    ] = False,
    no_delay: Annotated[
        bool, typer.Option("--no-delay", help="Refuse rather than queue or activate.")
    ] = False,
    priority: Annotated[
        int,
        typer.Option(
            "--priority",
            metavar="1..10",
            parser=option(lambda t: parse_int(t, low=1, high=10, what="--priority")),
            help="Message priority (high runs first).",
        ),
    ] = 5,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Send a message; prints the reply (JSON)."""
    from paglets.core.messages import Message

    named: dict[str, Any] = {}
    if args is not None:
        value = _json_arg(args, "--args")
        if not isinstance(value, dict):
            raise CliError(
                f"--args: must be a JSON object of named arguments, got {type(value).__name__}",
                hint="e.g. --args '{\"n\": 2}'",
            )
        named.update(value)
    for item in set_ or ():
        try:
            key, text = parse_key_value(item)
        except ValueFormatError as exc:
            raise CliError(f"--set: {exc}") from None
        named[key] = _json_arg(text, f"--set {key}")
    single = None if arg is None else _json_arg(arg, "--arg")
    try:
        message = Message(kind, named, single, priority=priority)
    except (TypeError, ValueError) as exc:
        raise CliError(f"KIND {kind!r}: {exc}") from None
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    ref = resolve_agent(session, agent)
    try:
        reply = session.client.send_message(
            ref.url,
            ref.agent_id,
            message,
            oneway=oneway,
            activate_if_inactive=not no_activate,
            no_delay=no_delay,
            durable=durable,
        )
    except PagletError as exc:
        if exc.remote_traceback and not json_:
            _print_handler_error(session, exc)
            raise typer.Exit(EXIT_FAILED) from None
        raise session.fail(exc) from exc
    if oneway:
        if json_:
            print_json({"sent": True, "agent_id": ref.agent_id})
        elif not quiet:
            print(f"sent {kind} to {ref.agent_id}")
        return
    if isinstance(reply, dict) and reply.get("queued") is True and "message_id" in reply:
        if json_:
            print_json({"queued": True, "message_id": reply["message_id"]})
        else:
            print(f"queued {reply['message_id']} (the paglet is inactive)")
        return
    if json_:
        print_json({"result": reply})
    else:
        import json

        sys.stdout.write(json.dumps(reply, indent=2, default=_plain) + "\n")


def _print_handler_error(session: Session, exc: PagletError) -> None:
    """A handler's failure: its type and message on the error line, then the last frames
    of the remote traceback (cli.md 2: `send` shows them)."""
    message, _hint, _code = _describe(session, exc)
    where = f" (on host {exc.host_name!r})" if exc.host_name else ""
    print_error("paglets agents send", f"{message}{where}")
    frames = [line for line in (exc.remote_traceback or "").rstrip().splitlines() if line]
    sys.stderr.write("remote traceback, last frames:\n")
    for line in frames[-REMOTE_FRAMES:]:
        sys.stderr.write(f"  {line}\n")
    sys.stderr.flush()


def _describe(session: Session, exc: PagletError) -> tuple[str, str | None, int]:
    from paglets.cli.session import describe_error

    return describe_error(exc, session.entry)


# -- moves ----------------------------------------------------------------------------------

TicketTimeout = Annotated[
    float,
    typer.Option(
        "--ticket-timeout",
        metavar="DURATION",
        parser=option(parse_duration),
        help="Bound of the departure turn, PREPARE and COMMIT.",
    ),
]
Retries = Annotated[
    int,
    typer.Option(
        "--retries",
        metavar="N",
        parser=option(lambda t: parse_int(t, low=0, what="--retries")),
        help="PREPARE retries under the same transfer id.",
    ),
]
Capabilities = Annotated[
    list[str] | None,
    typer.Option("--require-capability", metavar="CAP", help="Needed on the target (repeatable)."),
]
Inactive = Annotated[bool, typer.Option("--inactive", help="Arrive inactive (stored, asleep).")]


@app.command("dispatch")
def dispatch(
    agent: AgentId,
    target: Annotated[str, typer.Argument(metavar="TARGET", help="Host name or URL.")],
    ticket_timeout: TicketTimeout = 10.0,
    retries: Retries = 0,
    require_capability: Capabilities = None,
    inactive: Inactive = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Move a paglet to TARGET; prints `moved <id> to <target> (epoch N)`."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    ref = resolve_agent(session, agent)
    destination = session.host_url(target)
    ticket = _ticket(destination, ticket_timeout, retries, require_capability, inactive)
    proxy = session.call(lambda: session.client.dispatch(ref.url, ref.agent_id, ticket))
    epoch = _epoch_at(session, proxy.host_url, ref.agent_id)
    if json_:
        print_json(
            {
                "agent_id": ref.agent_id,
                "host_url": proxy.host_url,
                "epoch": epoch,
                "acknowledged": proxy.acknowledged,
            }
        )
        return
    shown = "?" if epoch is None else str(epoch)
    note = "" if proxy.acknowledged else "; the target has not acknowledged it yet"
    print(f"moved {ref.agent_id} to {target} (epoch {shown}){note}")


@app.command("clone")
def clone(
    agent: AgentId,
    target: Annotated[
        str | None,
        typer.Argument(metavar="[TARGET]", help="Host name or URL (default: its own host)."),
    ] = None,
    ticket_timeout: TicketTimeout = 10.0,
    retries: Retries = 0,
    require_capability: Capabilities = None,
    inactive: Inactive = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Copy a paglet (to TARGET, or on its own host); prints the clone's id."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    ref = resolve_agent(session, agent)
    ticket = None
    if target is not None:
        destination = session.host_url(target)
        ticket = _ticket(destination, ticket_timeout, retries, require_capability, inactive)
    proxy = session.call(lambda: session.client.clone(ref.url, ref.agent_id, ticket))
    if json_:
        print_json({"agent_id": proxy.agent_id, "host_url": proxy.host_url, "of": ref.agent_id})
    else:
        print(proxy.agent_id)


@app.command("retract")
def retract(
    agent: AgentId,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="HOST", help="Pull it here (default: the entry host)."),
    ] = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Pull a paglet from wherever it is to the entry host (or --to)."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    ref = resolve_agent(session, agent)
    destination = session.host_url(to)
    proxy = session.call(lambda: session.client.retract(ref.url, ref.agent_id, destination))
    if json_:
        print_json({"agent_id": ref.agent_id, "host_url": proxy.host_url})
    else:
        print(f"retracted {ref.agent_id} to {proxy.host_url}")


# -- deactivate, activate, dispose ----------------------------------------------------------


@app.command("deactivate")
def deactivate(
    agent: AgentId,
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why (stored with it).")
    ] = "deactivate",
    after: Annotated[
        float | None,
        typer.Option(
            "--after",
            metavar="DURATION",
            parser=option(parse_duration),
            help="Wake it after this long (a timer).",
        ),
    ] = None,
    at: Annotated[
        float | None,
        typer.Option(
            "--at",
            metavar="TIME",
            parser=option(_wake_time),
            help="Wake it at this time (ISO 8601, epoch seconds, or a duration from now).",
        ),
    ] = None,
    activate_on_startup: Annotated[
        bool, typer.Option("--activate-on-startup", help="Wake it when its host starts.")
    ] = False,
    no_activate_on_message: Annotated[
        bool, typer.Option("--no-activate-on-message", help="A message does not wake it.")
    ] = False,
    no_queue: Annotated[
        bool, typer.Option("--no-queue", help="Refuse messages while it sleeps.")
    ] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Deactivate a paglet (stored; woken by messages, a timer or host start-up)."""
    from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest

    if after is not None and at is not None:
        raise CliError("--after and --at both set a wake-up time: give one of them")
    activate_at = None
    if after is not None:
        activate_at = time.time() + after
    elif at is not None:
        activate_at = at
    policy = DeactivationPolicy(
        activate_on_message=not no_activate_on_message,
        queue_messages_when_inactive=not no_queue,
        activate_on_startup=activate_on_startup,
        activate_at=activate_at,
    )
    request = DeactivationRequest(reason=reason, source="external", policy=policy)
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    ref = resolve_agent(session, agent)
    proxy = session.call(lambda: session.client.deactivate(ref.url, ref.agent_id, request))
    if json_:
        print_json(
            {"agent_id": ref.agent_id, "host_url": proxy.host_url, "policy": policy.to_wire()}
        )
    else:
        wake = f"; wakes {_age(activate_at)}" if activate_at else ""
        print(f"deactivated {ref.agent_id} on {proxy.host_url}{wake}")


@app.command("activate")
def activate(
    agent: AgentId,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Activate an inactive paglet."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    _bring_back(session, agent, "activated", lambda c, ref: c.activate(ref.url, ref.agent_id))


def _bring_back(
    session: Session, agent: str, done: str, call: Callable[[HostClient, AgentRef], Any]
) -> None:
    """`activate` and `restart`: `call` on the paglet, then where it now runs."""
    ref = resolve_agent(session, agent)
    proxy = session.call(lambda: call(session.client, ref))
    if session.json:
        print_json({"agent_id": ref.agent_id, "host_url": proxy.host_url})
    else:
        print(f"{done} {ref.agent_id} on {proxy.host_url}")


@app.command("dispose")
def dispose(
    agents: Annotated[
        list[str] | None,
        typer.Argument(metavar="ID...", help="Agent ids or unique prefixes."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask.")] = False,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            metavar="STATE",
            parser=option(lambda t: parse_choice(t, STATES)),
            help="Also every paglet in this state (active, inactive, crashed, ...).",
        ),
    ] = None,
    all_hosts: AllHosts = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Dispose paglets, in any state (asks first on a terminal)."""
    if not agents and state is None:
        raise CliError("name the paglets to dispose (ID...) or pass --state STATE")
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    refs = {}
    for text in agents or ():
        ref = resolve_agent(session, text, all_hosts=all_hosts)
        refs[ref.agent_id] = ref
    if state is not None:
        urls = session.member_urls() if all_hosts else [session.entry]
        for url in urls:
            for summary in session.call(
                lambda url=url: _list_host(session, url, state, None, None, sys.maxsize)
            ):
                agent_id = str(summary["agent_id"])
                refs.setdefault(agent_id, _ref_of(summary, url))
    if not refs:
        if json_:
            print_json({"disposed": [], "errors": []})
        else:
            print(f"No {state} paglets.")
        raise typer.Exit(EXIT_FAILED)
    _confirm(force, [r.agent_id for r in refs.values()])
    disposed, errors = _dispose_all(session, refs.values())
    if json_:
        print_json({"disposed": disposed, "errors": errors})
    if errors:
        if not json_:
            for error in errors:
                print_error("paglets agents dispose", f"{error['agent_id']}: {error['error']}")
        raise typer.Exit(EXIT_FAILED)


def _ref_of(summary: dict[str, Any], url: str) -> AgentRef:
    return AgentRef(str(summary["agent_id"]), str(summary.get("address") or url).rstrip("/"))


def _confirm(force: bool, ids: list[str]) -> None:
    if force:
        return
    if not sys.stdin.isatty():
        raise CliError(
            "refusing to dispose without confirmation: not a terminal",
            hint="pass --force (-f) to dispose without asking",
        )
    shown = ", ".join(short_id(i) for i in ids[:CANDIDATES_SHOWN])
    more = f" and {len(ids) - CANDIDATES_SHOWN} more" if len(ids) > CANDIDATES_SHOWN else ""
    if not typer.confirm(f"Dispose {len(ids)} paglet(s): {shown}{more}?", default=False):
        raise typer.Exit(EXIT_FAILED)


def _dispose_all(
    session: Session, refs: Iterable[AgentRef]
) -> tuple[list[str], list[dict[str, Any]]]:
    disposed: list[str] = []
    errors: list[dict[str, Any]] = []
    for ref in refs:
        try:
            session.client.dispose(ref.url, ref.agent_id)
        except PagletError as exc:
            message, _hint, code = _describe(session, exc)
            if code == EXIT_USAGE and message.startswith("no paglets host at"):
                raise CliError(message, hint=_hint, code=code) from exc
            errors.append(
                {
                    "agent_id": ref.agent_id,
                    "error_type": type(exc).__name__,
                    "error": message,
                    "code": exc.code,
                }
            )
            continue
        disposed.append(ref.agent_id)
        if not session.json and not session.quiet:
            print(f"disposed {ref.agent_id}")
    return disposed, errors


# -- transfers ------------------------------------------------------------------------------


@app.command("transfers")
def transfers(
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            metavar="ROLE",
            parser=option(lambda t: parse_choice(t, ("source", "target"))),
            help="source (outgoing) or target (incoming).",
        ),
    ] = None,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only undecided or unacknowledged ones.")
    ] = False,
    long: Long = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Open and recent transfers of the entry host, with their ages (network.md 2.5)."""
    from urllib.parse import urlencode

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    query = f"?{urlencode({'role': role})}" if role else ""
    answer = session.call(lambda: session.client.get_json(f"{session.entry}/transfers{query}"))
    records = [r for r in (answer or {}).get("transfers") or () if isinstance(r, dict)]
    if open_only:
        records = [r for r in records if _is_open(r)]
    if json_:
        print_json({"transfers": records})
    elif records:
        table(
            "Transfers",
            ["transfer", "role", "agent", "kind", "status", "epoch", "peer", "age", "updated"],
            [
                [
                    short_id(r.get("transfer_id"), long),
                    str(r.get("role") or "-"),
                    short_id(r.get("agent_id"), long),
                    str(r.get("kind") or "-"),
                    str(r.get("status") or "-"),
                    str(r.get("epoch", "-")),
                    str(r.get("peer_url") or "-"),
                    _age(r.get("created_at")),
                    _age(r.get("updated_at")),
                ]
                for r in records
            ],
        )
    else:
        print("No open transfers." if open_only else "No transfers.")
    if not records:
        raise typer.Exit(EXIT_FAILED)


# -- restart, resolve -----------------------------------------------------------------------


@app.command("restart")
def restart(
    agent: AgentId,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Restart a crashed paglet from its last checkpoint."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    _bring_back(session, agent, "restarted", lambda c, ref: c.restart(ref.url, ref.agent_id))


TID_MIN_PREFIX = 8


def _transfer_id(session: Session, text: str) -> str:
    """A full transfer id, or a unique prefix of at least 8 hex characters among the entry
    host's transfers (cli.md 0.4)."""
    tid = text.strip().lower()
    if not tid or any(c not in "0123456789abcdef" for c in tid) or len(tid) > 32:
        raise CliError(
            f"TID {text!r} is not a transfer id (32 hex characters, or a unique prefix)",
            hint="paglets agents transfers --open --long lists them",
        )
    if len(tid) == 32:
        return tid
    if len(tid) < TID_MIN_PREFIX:
        raise CliError(f"transfer id prefix {text!r} is too short: give at least 8 characters")
    answer = session.call(lambda: session.client.get_json(f"{session.entry}/transfers"))
    found = sorted(
        {
            str(r.get("transfer_id"))
            for r in (answer or {}).get("transfers") or ()
            if str(r.get("transfer_id") or "").startswith(tid)
        }
    )
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(
            f"no transfer starting with {text!r} on {session.entry}",
            hint="paglets agents transfers --long lists them",
            code=EXIT_FAILED,
        )
    raise CliError(
        f"transfer id prefix {text!r} is ambiguous: {', '.join(found[:CANDIDATES_SHOWN])}",
        hint="give more characters of the id",
    )


@app.command("resolve")
def resolve(
    transfer: Annotated[
        str, typer.Argument(metavar="TID", help="Transfer id or unique prefix (8+).")
    ],
    keep_here: Annotated[
        bool, typer.Option("--keep-here", help="Make the entry host's copy the live one.")
    ] = False,
    give_up: Annotated[
        bool, typer.Option("--give-up", help="Discard the entry host's side of it.")
    ] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """End a transfer whose other host is gone for good (refused while it answers)."""
    if keep_here == give_up:
        raise CliError(
            "give exactly one of --keep-here or --give-up",
            hint="--keep-here makes this host's copy live; --give-up discards it",
        )
    decision = "keep-here" if keep_here else "give-up"
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    tid = _transfer_id(session, transfer)
    answer = session.call(
        lambda: session.client.post_json(
            f"{session.entry}/transfers/{tid}/resolve", {"decision": decision}
        )
    )
    if json_:
        print_json(answer)
        return
    agent_id = answer.get("agent_id")
    if answer.get("status") == "COMMITTED":
        proxy = answer.get("proxy") or {}
        print(f"kept {agent_id} here: live on {proxy.get('host_url') or session.entry}")
    elif answer.get("role") == "target":
        print(f"gave up transfer {tid}: the copy of {agent_id} on {session.entry} is discarded")
    else:
        print(f"gave up transfer {tid}: COMMIT of {agent_id} is no longer resent")
