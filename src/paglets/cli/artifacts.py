"""`paglets artifacts`: list, inspect, fetch, store and delete artifacts (cli.md section 6).

Every command talks to the entry host (`--entry`, `PAGLETS_ENTRY`, else
`http://127.0.0.1:8765`) or the one `--host` names; ids may be unique prefixes of at least
8 hex characters (the host resolves them). Transfers stream in parts with a progress bar
on a terminal; an interrupted `get` keeps its `.part` file and the next `get` resumes it.
`--timeout` bounds each control call; transfer parts get time in proportion to their size.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from paglets.artifacts import ArtifactRef, safe_file_name
from paglets.cli.errors import EXIT_FAILED, EXIT_USAGE, CliError
from paglets.cli.session import DEFAULT_ENTRY, ApiKeyEnv, Entry, Json, Quiet, Timeout
from paglets.cli.values import option, parse_duration
from paglets.core.errors import AuthenticationError, PagletError, RemoteHostError

__all__ = ["app"]


app = typer.Typer(
    name="artifacts",
    help="Artifacts: files stored on hosts, by id (unique prefixes of 8+ hex characters work).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

# The common options (cli.md 0.2) are the ones every command group shares.
HostOpt = Annotated[
    str | None,
    typer.Option("--host", metavar="NAME|URL", help="The host holding the artifacts."),
]


@dataclass(slots=True)
class _Session:
    """The client, the entry URL and how to report, for one command."""

    client: Any
    entry: str
    json: bool
    quiet: bool

    def host_url(self, host: str | None) -> str:
        return self.entry if host is None else _resolve_host(self, host)


def _session(
    entry: str | None, timeout: float, api_key_env: str | None, json_: bool, quiet: bool
) -> _Session:
    from paglets.cli.keys import read_mesh_key
    from paglets.remote.client import HostClient

    key = read_mesh_key(api_key_env)
    client = HostClient(timeout=timeout, api_key=key.value)
    base = os.environ.get("PAGLETS_ENTRY") or DEFAULT_ENTRY
    session = _Session(client, base.rstrip("/"), json_, quiet)
    if entry:
        session.entry = _resolve_host(session, entry)
    return session


def _resolve_host(session: _Session, name_or_url: str) -> str:
    """A URL as is; a name through the entry's member list (cli.md 0.3)."""
    if "://" in name_or_url:
        return name_or_url.rstrip("/")
    members = _call(session, lambda: session.client.list_hosts(session.entry))
    for member in members:
        if member.get("name") == name_or_url and member.get("url"):
            return str(member["url"]).rstrip("/")
    known = ", ".join(sorted(str(m.get("name")) for m in members)) or "none"
    raise CliError(
        f"no host named {name_or_url!r} in the mesh of {session.entry} (known: {known})",
        hint="pass a URL (http://HOST:PORT) or one of the known names",
    )


def _call(session: _Session, fn: Callable[[], Any]) -> Any:
    """Run a client call; paglets errors become `CliError` with cli.md 0.5's exit code
    (and, with `--json`, the error body on stdout)."""
    try:
        return fn()
    except PagletError as exc:
        raise _cli_error(session, exc) from exc


def _cli_error(session: _Session, exc: PagletError) -> CliError:
    code = exc.code or ""
    hint = getattr(exc, "hint", None)
    message = str(exc)
    exit_code = EXIT_FAILED
    if code in ("ambiguous-id", "bad-artifact-id") or isinstance(exc, AuthenticationError):
        exit_code = EXIT_USAGE
        if code == "ambiguous-id":
            hint = "give more characters of the id (paglets artifacts list --long)"
    elif isinstance(exc, RemoteHostError) and getattr(exc, "status", None) is None and not code:
        exit_code = EXIT_USAGE  # nothing answered
        if "could not reach" in message:
            message = f"no paglets host at {session.entry}: {message}"
            hint = 'start one with "paglets host --name NAME", or pass --entry URL'
    if session.json:
        _print_json(
            {
                "ok": False,
                "error": {
                    "error_type": type(exc).__name__,
                    "error": message,
                    "code": code or None,
                    "host_name": exc.host_name,
                    "detail": getattr(exc, "detail", None),
                },
            }
        )
    return CliError(message, hint=hint, code=exit_code)


# -- output ---------------------------------------------------------------------------------


def _print_json(doc: Any) -> None:
    import json

    sys.stdout.write(json.dumps(doc, sort_keys=True, indent=2, default=str) + "\n")


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal, the same columns as plain aligned text otherwise."""
    if sys.stdout.isatty():
        from rich.table import Table

        from paglets.cli.output import console

        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console().print(table)
        return
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for line in [columns, *rows]:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        sys.stdout.write("\n")


@contextmanager
def _progress(session: _Session, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A byte progress bar on stderr (only on a terminal, without --json/--quiet)."""
    if session.json or session.quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from paglets.cli.output import stderr_console

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr_console(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _short(artifact_id: str, long: bool) -> str:
    return artifact_id if long else artifact_id[:12]


def _expires(ref: ArtifactRef) -> str:
    from paglets.cli.output import format_age

    return "never" if not ref.expires_at else format_age(ref.expires_at)


# -- commands -------------------------------------------------------------------------------


@app.command("list")
def list_artifacts(
    owner: Annotated[
        str | None, typer.Option("--owner", "--agent", metavar="ID", help="Only this owner's.")
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", metavar="NAME|URL", help="Hosts to list (repeatable)."),
    ] = None,
    all_hosts: Annotated[bool, typer.Option("--all-hosts", help="Every host of the mesh.")] = False,
    long: Annotated[bool, typer.Option("--long", help="Full ids.")] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """List artifacts: artifact, host, size, owner, name, expires."""
    from paglets.cli.output import format_size
    from paglets.remote.artifact_client import list_artifacts as fetch

    session = _session(entry, timeout, api_key_env, json_, quiet)
    if all_hosts:
        members = _call(session, lambda: session.client.list_hosts(session.entry))
        urls = [str(m["url"]).rstrip("/") for m in members if m.get("online", True)]
        urls = urls or [session.entry]
    else:
        urls = [session.host_url(h) for h in host] if host else [session.entry]
    refs: list[ArtifactRef] = []
    errors: list[dict[str, Any]] = []
    for url in dict.fromkeys(urls):
        try:
            refs.extend(fetch(session.client, url, owner_agent_id=owner))
        except PagletError as exc:
            if len(urls) == 1:
                raise _cli_error(session, exc) from exc
            errors.append(
                {"host": url, "error_type": type(exc).__name__, "error": str(exc), "code": exc.code}
            )
    refs.sort(key=lambda r: (r.created_at, r.artifact_id))
    if json_:
        doc: dict[str, Any] = {"artifacts": [r.to_wire() for r in refs]}
        if errors:
            doc["errors"] = errors
        _print_json(doc)
    elif refs:
        rows = [
            [
                _short(r.artifact_id, long),
                r.host_name or r.host_url,
                format_size(r.size_bytes),
                r.owner_agent_id or "-",
                r.name,
                _expires(r),
            ]
            for r in refs
        ]
        _table("Artifacts", ["artifact", "host", "size", "owner", "name", "expires"], rows)
    elif not errors:
        print("No artifacts.")
    for error in errors if not json_ else ():
        sys.stderr.write(f"paglets artifacts list: {error['host']}: {error['error']}\n")
    if errors or not refs:
        raise typer.Exit(EXIT_FAILED)


@app.command("info")
def info(
    artifact_id: Annotated[str, typer.Argument(metavar="ID", help="Id or unique prefix.")],
    host: HostOpt = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Show one artifact's ref."""
    from paglets.remote.artifact_client import artifact_info

    session = _session(entry, timeout, api_key_env, json_, quiet)
    url = session.host_url(host)
    ref = _call(session, lambda: artifact_info(session.client, url, artifact_id))
    if json_:
        _print_json({"artifact": ref.to_wire()})
        return
    wire = ref.to_wire()
    width = max(len(k) for k in wire)
    for key, value in wire.items():
        print(f"{key.ljust(width)}  {'-' if value is None else value}")


@app.command("get")
def get(
    artifact_id: Annotated[str, typer.Argument(metavar="ID", help="Id or unique prefix.")],
    output: Annotated[
        Path | None,
        typer.Argument(metavar="[OUTPUT]", help="File or directory (default: its name here)."),
    ] = None,
    move: Annotated[bool, typer.Option("--move", help="Delete it on the host after.")] = False,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Ignore a .part left by an earlier try.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT.")] = False,
    host: HostOpt = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Download an artifact (resumed, SHA-256 checked, renamed into place); prints the path."""
    from paglets.remote.artifact_client import artifact_info, download_artifact

    session = _session(entry, timeout, api_key_env, json_, quiet)
    url = session.host_url(host)
    ref = _call(session, lambda: artifact_info(session.client, url, artifact_id))
    dest = output if output is not None else Path.cwd()
    if dest.is_dir():
        dest = dest / safe_file_name(ref.name, ref.artifact_id)
    if dest.exists() and not force:
        raise CliError(f"{dest} exists", hint="pass --force to overwrite it, or name OUTPUT")
    if not dest.parent.is_dir():
        raise CliError(f"{dest.parent} is not a directory", hint="create it, or name OUTPUT")
    with _progress(session, ref.name) as progress:
        path = _call(
            session,
            lambda: download_artifact(
                session.client, ref, dest, move=move, resume=not no_resume, progress=progress
            ),
        )
    if json_:
        _print_json({"artifact": ref.to_wire(), "path": str(path), "moved": move})
    else:
        print(path)


@app.command("put")
def put(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="The file to store.")],
    name: Annotated[
        str | None, typer.Option("--name", help="Its name (default: file name).")
    ] = None,
    owner: Annotated[
        str | None, typer.Option("--owner", metavar="ID", help="Owner paglet.")
    ] = None,
    expires_in: Annotated[
        float | None,
        typer.Option(
            "--expires-in",
            metavar="DURATION",
            parser=option(parse_duration),
            help="Delete it after this long (e.g. 1h, 7d).",
        ),
    ] = None,
    host: HostOpt = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Upload a file (resumable above 64 MiB); prints the artifact id."""
    from paglets.remote.artifact_client import upload_artifact

    if not path.is_file():
        raise CliError(f"{path} is not a file", hint="give the path of a regular file")
    session = _session(entry, timeout, api_key_env, json_, quiet)
    url = session.host_url(host)
    expires_at = time.time() + expires_in if expires_in else 0.0
    with _progress(session, path.name) as progress:
        ref = _call(
            session,
            lambda: upload_artifact(
                session.client,
                url,
                path,
                owner_agent_id=owner,
                name=name,
                expires_at=expires_at,
                progress=progress,
            ),
        )
    if json_:
        _print_json({"artifact": ref.to_wire()})
    else:
        print(ref.artifact_id)


@app.command("rm")
def rm(
    artifact_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Ids or prefixes.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask.")] = False,
    host: HostOpt = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Delete artifacts (asks first on a terminal)."""
    from paglets.remote.artifact_client import artifact_info, delete_artifact

    session = _session(entry, timeout, api_key_env, json_, quiet)
    url = session.host_url(host)
    refs = [_call(session, lambda i=i: artifact_info(session.client, url, i)) for i in artifact_ids]
    if not force:
        if not sys.stdin.isatty():
            raise CliError(
                "refusing to delete without confirmation: not a terminal",
                hint="pass --force (-f) to delete without asking",
            )
        listed = ", ".join(f"{r.artifact_id[:12]} ({r.name})" for r in refs)
        if not typer.confirm(f"Delete {len(refs)} artifact(s): {listed}?", default=False):
            raise typer.Exit(EXIT_FAILED)
    deleted: list[str] = []
    for ref in refs:
        if _call(session, lambda r=ref: delete_artifact(session.client, r)):
            deleted.append(ref.artifact_id)
            if not quiet and not json_:
                print(f"Deleted {ref.artifact_id}")
    if json_:
        _print_json({"deleted": deleted})
    if len(deleted) != len(refs):
        raise typer.Exit(EXIT_FAILED)
