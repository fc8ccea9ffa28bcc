"""`paglets mesh targets` (cli.md §3): the hosts that could take some work now, best first,
as the entry host's `mesh-info` service selects them from its membership table.

Every filter applies: load per CPU, CPU %, free memory and work space, tags, the age of
the load summary, this host in or out (**fix**: paglets 2.0 ignored the load and CPU
limits and padded the answer with "fallback" hosts). A "Rejected" table says why each
other host was left out. Exit 1 when nothing qualifies.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED, CliError
from paglets.cli.mesh_summary import MaxAge
from paglets.cli.output import format_size
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Timeout,
    open_session,
    print_json,
    table,
)
from paglets.cli.values import option, parse_int, parse_size

__all__ = ["targets"]

TARGET_COLUMNS = (
    "host",
    "score",
    "cpu%",
    "load/cpu",
    "ram free",
    "work free",
    "active",
    "inactive",
)


def _float(text: str, what: str) -> float:
    from paglets.cli.values import ValueFormatError

    try:
        value = float(text)
    except ValueError:
        raise ValueFormatError(f'cannot read "{text}" as {what} (a number such as 1.5)') from None
    if value < 0:
        raise ValueFormatError(f"{what} must be 0 or more, got {value:g}")
    return value


def _size_text(value: Any) -> str:
    return format_size(value) if isinstance(value, int | float) else "-"


def targets(
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            parser=option(lambda t: parse_int(t, low=0, what="--limit")),
            help="At most N hosts (0 = all).",
        ),
    ] = 5,
    max_age: MaxAge = 0.0,
    max_load_per_cpu: Annotated[
        float,
        typer.Option(
            "--max-load-per-cpu",
            metavar="X",
            parser=option(lambda t: _float(t, "--max-load-per-cpu")),
            help="Leave out hosts whose 1-minute load per CPU is higher.",
        ),
    ] = 1.0,
    max_cpu_percent: Annotated[
        float,
        typer.Option(
            "--max-cpu-percent",
            metavar="P",
            parser=option(lambda t: _float(t, "--max-cpu-percent")),
            help="Leave out hosts whose CPU use is higher.",
        ),
    ] = 100.0,
    mem: Annotated[
        int,
        typer.Option(
            "--mem",
            metavar="SIZE",
            parser=option(parse_size),
            help="Free memory needed now (e.g. 2G).",
        ),
    ] = 0,
    temp: Annotated[
        int,
        typer.Option(
            "--temp",
            "--disk",
            metavar="SIZE",
            parser=option(parse_size),
            help="Free work space needed now (e.g. 10G).",
        ),
    ] = 0,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="T", help="Required tag (repeatable)."),
    ] = None,
    exclude_tag: Annotated[
        list[str] | None,
        typer.Option("--exclude-tag", metavar="T", help="Leave out hosts with this tag."),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", metavar="CONSTRAINT", help="Host property constraint, e.g. 'python>=3.12'."
        ),
    ] = None,
    include_self: Annotated[
        bool, typer.Option("--include-self/--exclude-self", help="Consider the entry host too.")
    ] = True,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Hosts for new work now, best first (mesh-info select on the entry host)."""
    from paglets.cli.fanout import call_service
    from paglets.serialization import codec
    from paglets.system.host_properties import parse_constraint
    from paglets.system.mesh_info.contract import (
        MESH_INFO,
        SELECT,
        TargetSelectionRequest,
    )

    for text in where or ():
        try:
            parse_constraint(text)
        except ValueError as exc:
            raise CliError(f"--where: {exc}") from None
    request = TargetSelectionRequest(
        limit=limit,
        max_age=max_age,
        max_load_per_cpu=max_load_per_cpu,
        max_cpu_percent=max_cpu_percent,
        min_free_memory_bytes=int(mem or 0),
        min_free_temp_bytes=int(temp or 0),
        required_tags=tuple(tag or ()),
        excluded_tags=tuple(exclude_tag or ()),
        required_properties=tuple(where or ()),
        include_self=include_self,
    )
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    reply = session.call(lambda: call_service(session, session.entry, MESH_INFO, SELECT, request))
    if json_:
        print_json(codec.to_wire_form(reply))
    else:
        if reply.targets:
            table(
                "Mesh Targets",
                TARGET_COLUMNS,
                [
                    [
                        t.host.host_name + (" (entry)" if t.host.is_self else ""),
                        f"{t.score:.2f}",
                        f"{t.host.cpu_percent:.0f}",
                        f"{t.host.load_per_cpu:.2f}",
                        _size_text(t.host.free_memory_bytes),
                        _size_text(t.host.free_temp_bytes),
                        str(t.host.active_count),
                        str(t.host.inactive_count),
                    ]
                    for t in reply.targets
                ],
            )
        else:
            print("No host qualifies.")
        if reply.rejected:
            table(
                "Rejected",
                ["host", "reasons"],
                [
                    [r.host_name, "; ".join(x.message for x in r.reasons) or "-"]
                    for r in reply.rejected
                ],
            )
    if not reply.targets:
        raise typer.Exit(EXIT_FAILED)
