"""`paglets examples file push|pull SOURCE --remote HOST` (cli.md §8, jobs.md §7): a file
travels as a registered file of a paglet that dispatches itself
(`paglets.patterns.file_mobility.SingleFileTransferPaglet`).

`push` carries SOURCE (a path here, on the entry host's machine) to `--remote`; `pull`
carries SOURCE (a path on `--remote`, absolute or `~/…`) to the entry host. `--mode move`
deletes the source once the move has committed; a failed copy at the destination aborts
the move, so the source is always kept then. The command waits for the outcome and prints
`COMPLETED: host:src (size) -> host:dest` (exit 0), or the failure (exit 1). The
transfer paglet is disposed afterwards either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from paglets.cli.errors import EXIT_FAILED, CliError
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Session,
    Timeout,
    open_session,
    print_json,
)
from paglets.cli.values import option, parse_choice, parse_duration

__all__ = ["app"]

TRANSFER_CLASS = "paglets.patterns.file_mobility:SingleFileTransferPaglet"

app = typer.Typer(
    name="file",
    help="Carry one file to or from another host inside a paglet (copy or move).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

Remote = Annotated[
    str,
    typer.Option("--remote", metavar="NAME|URL", help="The other host (a member's name or URL)."),
]
Dest = Annotated[
    str | None,
    typer.Option(
        "--dest",
        metavar="PATH",
        help="Where the file goes (absolute or ~/...; ending in / keeps its name).",
    ),
]
Mode = Annotated[
    str,
    typer.Option(
        "--mode",
        metavar="copy|move",
        parser=option(lambda t: parse_choice(t, ("copy", "move"))),
        help="move deletes the source once the file has arrived.",
    ),
]
Dry = Annotated[bool, typer.Option("--dry", help="Plan and check only; nothing moves.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing destination.")]
RequestTimeout = Annotated[
    float,
    typer.Option(
        "--request-timeout",
        metavar="DURATION",
        parser=option(parse_duration),
        help="How long the move may take.",
    ),
]


def _transfer(
    session: Session,
    *,
    create_at: str,
    source: str,
    target: str,
    dest: str,
    mode: str,
    dry: bool,
    overwrite: bool,
    request_timeout: float,
) -> None:
    from paglets.patterns.file_mobility import (
        FileTransferMode,
        FileTransferRequest,
        SingleFileTransferPaglet,
    )
    from paglets.patterns.tasks import TaskClient, TaskStatus
    from paglets.remote.proxy import PagletProxy
    from paglets.serialization import codec

    client = session.client
    created = session.call(
        lambda: client.create_agent(create_at, TRANSFER_CLASS, timeout=session.timeout)
    )
    proxy = PagletProxy(create_at, created.agent_id, client)
    task = TaskClient.for_paglet(proxy, SingleFileTransferPaglet)
    request = FileTransferRequest(
        source_path=source,
        target=target,
        destination_path=dest,
        mode=FileTransferMode(mode),
        overwrite=overwrite,
        dry_run=dry,
        timeout=request_timeout,
    )
    try:
        snapshot = session.call(lambda: task.start(request, timeout=request_timeout + 30.0))
    finally:
        where = task.proxy
        try:
            client.dispose(where.host_url, where.agent_id, timeout=session.timeout)
        except Exception as exc:  # the outcome matters more than the cleanup
            session.info(f"paglets examples file: transfer paglet not disposed: {exc}")
    result = snapshot.result
    completed = snapshot.status is TaskStatus.COMPLETED and result is not None
    if session.json:
        print_json(
            {
                "ok": completed,
                "status": snapshot.status.value,
                "error": snapshot.error or None,
                "result": codec.to_wire_form(result) if result is not None else None,
            }
        )
    elif completed and result is not None:
        label = "COMPLETED (dry run)" if result.dry_run else "COMPLETED"
        src, dst = result.source, result.destination
        print(
            f"{label}: {src.host_name or src.host_url}:{src.path} ({result.size_text}) -> "
            f"{dst.host_name or dst.host_url}:{dst.path}"
        )
    if not completed:
        if not session.json:
            print(
                f"{snapshot.status.value.upper()}: {snapshot.error or 'the transfer did not finish'}"
            )
        raise typer.Exit(EXIT_FAILED)


def _remote_url(session: Session, remote: str) -> str:
    url = session.host_url(remote)
    if url.rstrip("/") == session.entry.rstrip("/"):
        raise CliError(
            f"--remote {remote!r} is the entry host itself; name another host",
            hint="paglets mesh hosts lists the members",
        )
    return url


@app.command()
def push(
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="A file here.")],
    remote: Remote,
    dest: Dest = None,
    mode: Mode = "copy",
    dry: Dry = False,
    overwrite: Overwrite = False,
    request_timeout: RequestTimeout = 60.0,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Carry SOURCE (on the entry host) to --remote (default destination: ~/ there)."""
    path = source.expanduser().absolute()
    if not path.is_file():
        raise CliError(f"SOURCE {str(path)!r} is not a file here")
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    target = _remote_url(session, remote)
    _transfer(
        session,
        create_at=session.entry,
        source=str(path),
        target=target,
        dest=dest or "~/",
        mode=mode,
        dry=dry,
        overwrite=overwrite,
        request_timeout=request_timeout,
    )


@app.command()
def pull(
    source: Annotated[
        str, typer.Argument(metavar="SOURCE", help="A file on --remote (absolute or ~/...).")
    ],
    remote: Remote,
    dest: Dest = None,
    mode: Mode = "copy",
    dry: Dry = False,
    overwrite: Overwrite = False,
    request_timeout: RequestTimeout = 60.0,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Carry SOURCE from --remote to the entry host (default destination: this directory)."""
    if not (source.startswith("/") or source.startswith("~")):
        raise CliError(
            f"SOURCE {source!r} is a path on the remote host: give it absolute or starting with ~",
            hint="example: paglets examples file pull ~/results.csv --remote beta",
        )
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    origin = _remote_url(session, remote)
    destination = dest or str(Path.cwd().absolute()) + "/"
    _transfer(
        session,
        create_at=origin,
        source=source,
        target=session.entry,
        dest=destination,
        mode=mode,
        dry=dry,
        overwrite=overwrite,
        request_timeout=request_timeout,
    )
