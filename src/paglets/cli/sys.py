"""`paglets sys`: what the machines of the mesh are doing (cli.md §5).

Each command asks the `server-info` service (jobs.md §6) of every alive, compatible member
(or the `--host`s given) **in parallel** under one `--timeout` (5 s), prints what arrived,
and names the hosts that failed or stayed silent in an "Errors" section (exit 1). paglets
2.0 polled the hosts one after the other.

`summary` (the machines), `load [--interval D] [--gpu/--no-gpu]`, `df [PATH...]` and
`ps QUERY [--limit N] [--args]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED
from paglets.cli.fanout import FanOut, ask_service, report_failures
from paglets.cli.output import format_size
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Session,
    Timeout,
    open_session,
    print_json,
    table,
)
from paglets.cli.values import option, parse_duration, parse_int

__all__ = ["app"]

app = typer.Typer(
    name="sys",
    help="The machines of the mesh: summary, load, disks, processes (server-info on each host).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

Hosts = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        metavar="NAME|URL",
        help="Ask only this host (repeatable; default: every alive member).",
    ),
]


def _finish(
    session: Session,
    result: FanOut,
    key: str,
    rows_of: Callable[[Any], list[dict[str, Any]]],
    show: Callable[[list[Any]], None],
) -> None:
    """Print the answers (`--json`: `{key: [...], "errors": [...]}`), then the errors;
    exit 1 if any host failed."""
    replies = [reply for _, reply in result.answers]
    if session.json:
        doc: dict[str, Any] = {key: [row for reply in replies for row in rows_of(reply)]}
        doc["errors"] = [f.to_json() for f in result.failures]
        print_json(doc)
    else:
        if replies:
            show(replies)
        elif not result.failures:
            print("No host answered.")
        report_failures(session, result.failures, "Errors")
    if result.failures or not replies:
        raise typer.Exit(EXIT_FAILED)


def _wire(reply: Any) -> dict[str, Any]:
    from paglets.serialization import codec

    return codec.to_wire_form(reply)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


# -- summary --------------------------------------------------------------------------------


@app.command()
def summary(
    host: Hosts = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Each machine: CPUs, memory, boot time, platform, Python and paglets versions."""
    from paglets.system.server_info.contract import SERVER_INFO, SUMMARY

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    result = ask_service(session, host, SERVER_INFO, SUMMARY)

    def show(replies: list[Any]) -> None:
        table(
            "Host Summary",
            ["host", "cpu", "mem total", "booted", "platform", "python", "paglets"],
            [
                [
                    r.host_name,
                    f"{r.logical_cpus} ({r.physical_cpus} cores)"
                    if r.physical_cpus
                    else str(r.logical_cpus),
                    format_size(r.memory_total_bytes),
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r.boot_time))
                    if r.boot_time
                    else "-",
                    f"{r.platform} {r.arch}".strip(),
                    r.python_version or "-",
                    r.paglets_version or "-",
                ]
                for r in replies
            ],
        )

    _finish(session, result, "hosts", lambda r: [_wire(r)], show)


# -- load -----------------------------------------------------------------------------------


def _gpu_text(reply: Any) -> str:
    if reply.gpus:
        return ", ".join(f"{g.name}:{g.utilization_percent}%" for g in reply.gpus)
    if reply.gpu_error:
        return f"unavailable: {reply.gpu_error}"
    if not reply.gpu_present:
        return "none (no nvidia-smi)"
    return "none"


@app.command()
def load(
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="DURATION",
            parser=option(parse_duration),
            help="Measure CPU use over this long (0: the last whole second).",
        ),
    ] = 0.0,
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="Include GPUs.")] = True,
    host: Hosts = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """CPU, memory, swap, load averages and GPUs of each machine now."""
    from paglets.system.server_info.contract import LOAD, MAX_INTERVAL, SERVER_INFO, LoadRequest

    interval = min(interval, MAX_INTERVAL)
    session = open_session(entry, timeout + interval, api_key_env, json_, quiet)
    request = LoadRequest(interval=interval, include_gpu=gpu)
    result = ask_service(session, host, SERVER_INFO, LOAD, request)

    def show(replies: list[Any]) -> None:
        table(
            "Load",
            ["host", "cpu%", "mem%", "swap%", "load (1/5/15)", "gpu"],
            [
                [
                    r.host_name,
                    _pct(r.cpu_percent),
                    _pct(r.memory_percent),
                    _pct(r.swap_percent) if r.swap_total_bytes else "-",
                    "/".join(f"{x:.2f}" for x in r.load_average),
                    _gpu_text(r) if gpu else "-",
                ]
                for r in replies
            ],
        )

    _finish(session, result, "hosts", lambda r: [_wire(r)], show)


# -- df -------------------------------------------------------------------------------------


@app.command()
def df(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PATH]...", help="Paths on each host (default: / and every volume)."
        ),
    ] = None,
    all_volumes: Annotated[
        bool, typer.Option("--all", help="Also pseudo file systems and every mount.")
    ] = False,
    host: Hosts = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Disk space of each machine's volumes (or of the PATHs there)."""
    from paglets.system.server_info.contract import DF, SERVER_INFO, DfRequest

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    request = DfRequest(paths=tuple(paths or ()), all_volumes=all_volumes)
    result = ask_service(session, host, SERVER_INFO, DF, request)

    def rows(reply: Any) -> list[dict[str, Any]]:
        return [{"host": reply.host_name, **_wire(v)} for v in reply.volumes]

    def show(replies: list[Any]) -> None:
        out = []
        for r in replies:
            for v in r.volumes:
                if v.error:
                    out.append([r.host_name, v.path, "-", "-", "-", f"error: {v.error}"])
                    continue
                out.append(
                    [
                        r.host_name,
                        v.path
                        if v.path == v.mountpoint or not v.mountpoint
                        else f"{v.path} (on {v.mountpoint})",
                        format_size(v.total_bytes),
                        format_size(v.used_bytes),
                        format_size(v.free_bytes),
                        f"{v.percent:.0f}%",
                    ]
                )
        table("Disk", ["host", "path", "size", "used", "free", "use%"], out)

    _finish(session, result, "volumes", rows, show)
    if any(v.error for _, r in result.answers for v in r.volumes):
        raise typer.Exit(EXIT_FAILED)


# -- ps -------------------------------------------------------------------------------------


@app.command()
def ps(
    query: Annotated[
        str, typer.Argument(metavar="QUERY", help="Part of the name or command line ('' = all).")
    ] = "",
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            parser=option(lambda t: parse_int(t, low=1, high=1000, what="--limit")),
            help="At most N processes per host.",
        ),
    ] = 25,
    args: Annotated[bool, typer.Option("--args", help="Show full command lines.")] = False,
    host: Hosts = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Processes matching QUERY on each machine, largest memory first."""
    from paglets.system.server_info.contract import PLIST, SERVER_INFO, PlistRequest

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    request = PlistRequest(query=query, limit=limit, include_args=args)
    result = ask_service(session, host, SERVER_INFO, PLIST, request)

    def rows(reply: Any) -> list[dict[str, Any]]:
        return [{"host": reply.host_name, **_wire(p)} for p in reply.processes]

    def show(replies: list[Any]) -> None:
        if not any(r.processes for r in replies):
            print(f"No process matches {query!r}." if query else "No processes.")
            return
        table(
            "Processes",
            ["host", "pid", "rss", "mem%", "cpu%", "status", "command" if args else "name"],
            [
                [
                    r.host_name,
                    str(p.pid),
                    format_size(p.rss_bytes),
                    f"{p.memory_percent:.1f}",
                    _pct(p.cpu_percent),
                    p.status or "-",
                    (p.cmdline or p.name) if args else p.name,
                ]
                for r in replies
                for p in r.processes
            ],
        )

    _finish(session, result, "processes", rows, show)
    if not any(r.processes for _, r in result.answers):
        raise typer.Exit(EXIT_FAILED)  # nothing found (cli.md 0.5)
