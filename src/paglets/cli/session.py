"""The client side of the commands that talk to hosts (cli.md sections 0.2 to 0.5): the
common options, the entry host, the `HostClient` with the mesh key and TLS files, how a
paglets error becomes one line and an exit code, and the JSON and table printers.

A command opens a `Session` from its common options and runs every client call through
`Session.call`, so that an unreachable entry, a refused key or a remote failure ends the
same way in every group: `paglets <group> <command>: <message>` on stderr (printed by
`paglets.cli.main`), `{"ok": false, "error": {...}}` on stdout with `--json`, and exit 2
when the command could not run, 1 when it ran and the result is negative.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED, EXIT_USAGE, CliError
from paglets.cli.values import option, parse_duration
from paglets.core.errors import (
    AuthenticationError,
    InvalidAgentIdError,
    PagletError,
    PagletTimeoutError,
    RemoteHostError,
)

if TYPE_CHECKING:
    from paglets.remote.client import HostClient

__all__ = [
    "DEFAULT_ENTRY",
    "ApiKeyEnv",
    "Entry",
    "Json",
    "Quiet",
    "Session",
    "Timeout",
    "TlsFiles",
    "error_doc",
    "open_session",
    "print_json",
    "print_json_line",
    "short_id",
    "table",
    "tls_files",
]

DEFAULT_ENTRY = "http://127.0.0.1:8765"
START_HINT = 'start one with "paglets host --name NAME", or pass --entry URL'

# Remote codes that mean "the value given on the command line is wrong" (exit 2), not
# "the operation was refused" (exit 1).
_USAGE_CODES = frozenset({"ambiguous-id", "bad-agent-id", "bad-artifact-id"})

# -- common options (cli.md 0.2) ------------------------------------------------------------

Entry = Annotated[
    str | None,
    typer.Option(
        "--entry",
        metavar="NAME|URL",
        help="The host to talk to first (default: PAGLETS_ENTRY, else http://127.0.0.1:8765).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Machine output (JSON) on stdout.")]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        parser=option(parse_duration),
        help="Deadline of each call to a host (e.g. 10s, 1m).",
    ),
]
ApiKeyEnv = Annotated[
    str | None,
    typer.Option(
        "--api-key-env",
        metavar="NAME",
        help="Variable holding the mesh key (default PAGLETS_API_KEY, then ~/.paglets/mesh.key).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or info lines.")]


# -- TLS files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The CA that verifies hosts and the client certificate shown to them (each optional)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def tls_files() -> TlsFiles:
    """`PAGLETS_TLS_CA`/`_CERT`/`_KEY`, else `~/.paglets/tls/{ca.crt,client.crt,client.key}`
    when present (the files `paglets certs` makes)."""
    folder = Path.home() / ".paglets" / "tls"

    def pick(variable: str, default: str) -> Path | None:
        value = os.environ.get(variable, "").strip()
        if value:
            return Path(value).expanduser()
        path = folder / default
        return path if path.is_file() else None

    cert = pick("PAGLETS_TLS_CERT", "client.crt")
    key = pick("PAGLETS_TLS_KEY", "client.key")
    if cert is None:
        key = None  # a key alone is useless (and would fail to load)
    return TlsFiles(pick("PAGLETS_TLS_CA", "ca.crt"), cert, key)


# -- the session ----------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """The client, the entry URL and how to report, for one command."""

    client: HostClient
    entry: str
    json: bool
    quiet: bool
    timeout: float
    key_source: str
    # For the few exchanges HostClient does not make (the SSE stream): never in a repr.
    api_key: str | None = field(default=None, repr=False)
    tls: TlsFiles = field(default_factory=lambda: TlsFiles())

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a client call; a paglets error becomes a `CliError` (cli.md 0.5)."""
        try:
            return fn()
        except PagletError as exc:
            raise self.fail(exc) from exc

    def fail(self, exc: PagletError, *, announce: bool = True) -> CliError:
        """The `CliError` for `exc`; with `--json` (and `announce`) the error document is
        printed on stdout first."""
        message, hint, code = describe_error(exc, self.entry)
        if self.json and announce:
            print_json({"ok": False, "error": error_doc(exc, message)})
        return CliError(message, hint=hint, code=code)

    def host_url(self, name_or_url: str | None) -> str:
        """A URL as is; a name through the entry's member list (cli.md 0.3); None: the
        entry."""
        if name_or_url is None:
            return self.entry
        if "://" in name_or_url:
            return name_or_url.rstrip("/")
        members = self.members()
        for member in members:
            if member.get("name") == name_or_url and member.get("url"):
                return str(member["url"]).rstrip("/")
        known = ", ".join(sorted(str(m.get("name")) for m in members)) or "none"
        raise CliError(
            f"no host named {name_or_url!r} in the mesh of {self.entry} (known: {known})",
            hint="pass a URL (http://HOST:PORT) or one of the known names",
        )

    def members(self) -> list[dict[str, Any]]:
        """The entry's member list (`GET /hosts`)."""
        return list(self.call(lambda: self.client.list_hosts(self.entry)))

    def member_urls(self) -> list[str]:
        """Every online member's URL, the entry first."""
        urls = [self.entry]
        for member in self.members():
            url = str(member.get("url") or "").rstrip("/")
            if url and member.get("online", True) and url not in urls:
                urls.append(url)
        return urls

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context like HostClient's: the mesh CA (else the system's), and the
        client certificate when there is one."""
        context = ssl.create_default_context(
            cafile=None if self.tls.ca is None else str(self.tls.ca)
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls.cert is not None:
            context.load_cert_chain(
                str(self.tls.cert), None if self.tls.key is None else str(self.tls.key)
            )
        return context

    def info(self, text: str, *, with_json: bool = False) -> None:
        """An informational line on stderr: not with `--quiet`, nor with `--json` unless
        `with_json` (stream notices: stdout stays machine-readable either way)."""
        if not self.quiet and (with_json or not self.json):
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


def open_session(
    entry: str | None,
    timeout: float,
    api_key_env: str | None,
    json_: bool,
    quiet: bool,
) -> Session:
    """The session of one command: the mesh key (cli.md 0.2), the TLS files, the entry."""
    from paglets.cli.keys import read_mesh_key
    from paglets.remote.client import HostClient

    if timeout <= 0:
        raise CliError(f"--timeout: must be more than 0 seconds, got {timeout:g}")
    key = read_mesh_key(api_key_env)
    tls = tls_files()
    try:
        client = HostClient(
            timeout=timeout,
            api_key=key.value,
            tls_ca=tls.ca,
            tls_cert=tls.cert,
            tls_key=tls.key,
        )
    except (OSError, ssl.SSLError) as exc:
        shown = ", ".join(str(p) for p in (tls.ca, tls.cert, tls.key) if p is not None)
        raise CliError(
            f"cannot load the TLS files ({shown}): {getattr(exc, 'strerror', None) or exc}",
            hint="check PAGLETS_TLS_CA/PAGLETS_TLS_CERT/PAGLETS_TLS_KEY or ~/.paglets/tls/ "
            '(made by "paglets certs")',
        ) from None
    if key.value is not None:
        client.key_source = key.source  # named in a 401's message
    base = (os.environ.get("PAGLETS_ENTRY") or DEFAULT_ENTRY).strip().rstrip("/")
    session = Session(client, base, json_, quiet, timeout, key.source, key.value, tls)
    if entry:
        session.entry = session.host_url(entry)
    return session


# -- errors ---------------------------------------------------------------------------------


def describe_error(exc: PagletError, entry: str) -> tuple[str, str | None, int]:
    """(message, hint, exit code) for a paglets error raised by a client call."""
    code = exc.code or ""
    message = str(exc) or type(exc).__name__
    hint: str | None = getattr(exc, "hint", None)
    if isinstance(exc, AuthenticationError):
        return message, hint or 'write the mesh key with "paglets certs key --write"', EXIT_USAGE
    if isinstance(exc, InvalidAgentIdError) or code in _USAGE_CODES:
        return message, hint, EXIT_USAGE
    unreachable = (
        isinstance(exc, RemoteHostError)
        and not isinstance(exc, PagletTimeoutError)
        and message.startswith("could not reach ")
    ) or (isinstance(exc, PagletTimeoutError) and "no connection within" in message)
    if unreachable:
        where, _, reason = message.removeprefix("could not reach ").partition(": ")
        tls_hint = None
        if "TLS" in reason or (where.startswith("https:") and "closed" in reason):
            # A refused client certificate shows as a closed connection (TLS 1.3).
            tls_hint = (
                "check the mesh CA and the client certificate (PAGLETS_TLS_CA, "
                "PAGLETS_TLS_CERT/KEY or ~/.paglets/tls/, made by paglets certs)"
            )
        elif where.startswith("http:") and "closed" in reason:
            tls_hint = "if the host serves HTTPS (--tls-cert), use an https:// URL"
        if where.rstrip("/") == entry.rstrip("/"):
            text = f"no paglets host at {entry} ({reason or 'no answer'})"
            return text, tls_hint or START_HINT, EXIT_USAGE
        if tls_hint:
            return message, tls_hint, EXIT_USAGE
        return message, hint, EXIT_FAILED
    name = _remote_name(exc) if exc.remote_type else type(exc).__name__
    if not message.startswith(name):
        message = f"{name}: {message}"
    return message, hint, EXIT_FAILED


def error_doc(exc: PagletError, message: str | None = None) -> dict[str, Any]:
    """The error body of `{"ok": false, "error": ...}` (network.md 1.5's fields)."""
    return {
        "error_type": type(exc).__name__ if not exc.remote_type else _remote_name(exc),
        "error": str(exc) if message is None else message,
        "code": exc.code or None,
        "host_name": exc.host_name,
        "detail": getattr(exc, "detail", None),
        "traceback": exc.remote_traceback,
    }


def _remote_name(exc: PagletError) -> str:
    remote = exc.remote_type or ""
    return remote.rpartition(":")[2] or type(exc).__name__


# -- output ---------------------------------------------------------------------------------


def print_json(doc: Any) -> None:
    """One JSON document on stdout: sorted keys, binary values tagged (cli.md 0.4)."""
    sys.stdout.write(json.dumps(_safe(doc), sort_keys=True, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_json_line(doc: Any) -> None:
    """One JSON object on one line (streams: one event per line)."""
    sys.stdout.write(json.dumps(_safe(doc), sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def _safe(doc: Any) -> Any:
    from paglets.serialization import codec

    try:
        return codec.json_safe(doc)
    except Exception:
        return doc  # json.dumps' default=str then shows what it cannot encode


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A titled rich table on a terminal; the same columns as plain aligned text otherwise."""
    if sys.stdout.isatty():
        from rich.table import Table

        from paglets.cli.output import console

        grid = Table(title=title)
        for column in columns:
            grid.add_column(column)
        for row in rows:
            grid.add_row(*row)
        console().print(grid)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    out = sys.stdout
    for line in [columns, *rows]:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        out.write("\n")
    out.flush()


def short_id(value: str | None, long: bool = False) -> str:
    """Tables show 12 characters of an id unless `--long` (cli.md 0.4)."""
    if not value:
        return "-"
    return value if long else value[:12]
