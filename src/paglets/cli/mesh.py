"""`paglets mesh`: the mesh as the entry host sees it (cli.md §3).

`hosts` (alias `members`) reads the entry's membership view (`GET /mesh/members`); no
other host is asked. `summary` (in `mesh_summary.py`) reads the resource summaries gossiped
with membership from the same view.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED
from paglets.cli.mesh_summary import gossip_members, member_resources
from paglets.cli.mesh_summary import summary as _summary
from paglets.cli.mesh_targets import targets as _targets
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Timeout,
    open_session,
    print_json,
    short_id,
    table,
)

app = typer.Typer(
    name="mesh",
    help="The mesh as the entry host sees it: members, their state, versions and tags.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

STATUSES = ("alive", "suspect", "dead", "left", "incompatible")
HOST_COLUMNS = (
    *("name", "status", "url", "version", "tags", "cores", "mem free", "load/cpu"),
    *("paglets", "status since", "host id"),
)


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _status(member: dict[str, Any]) -> str:
    if member.get("incompatible_reason"):
        return "incompatible"
    return str(member.get("status") or "-")


def _load_columns(r: dict[str, Any]) -> list[str]:
    """cores free/total, memory free and load per CPU (cli.md §3), `-` while unknown."""
    from paglets.cli.output import format_size

    total = r.get("job_cores", r.get("logical_cpus"))
    cores = f"{r['free_cpu_cores']}/{total}" if "free_cpu_cores" in r and total else "-"
    free = r.get("free_memory_bytes")
    memory = format_size(free) if isinstance(free, int | float) else "-"
    load = f"{r['load_per_cpu']:.2f}" if "load_per_cpu" in r else "-"
    return [cores, memory, load]


def hosts(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", metavar="S", help=f"Only members in this state ({', '.join(STATUSES)})."
        ),
    ] = None,
    long: Annotated[bool, typer.Option("--long", help="Full host ids.")] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 10.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Mesh members from the entry host's view; incompatible ones give the reason."""
    from paglets.cli.errors import CliError

    wanted = set(status or ())
    unknown = wanted - set(STATUSES)
    if unknown:
        raise CliError(
            f"--status: unknown state {sorted(unknown)[0]!r} (one of: {', '.join(STATUSES)})"
        )
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    members = gossip_members(session)
    if wanted:
        members = [m for m in members if _status(m) in wanted]
    if json_:
        print_json({"hosts": members})
    elif members:
        table(
            "Mesh Hosts",
            HOST_COLUMNS,
            [
                [
                    str(m.get("name")) + (" (entry)" if m.get("self") else ""),
                    _status(m)
                    + (f": {m['incompatible_reason']}" if m.get("incompatible_reason") else ""),
                    str(m.get("url") or "-"),
                    str(m.get("code_version") or "-"),
                    ",".join(m.get("tags") or ()) or "-",
                    *_load_columns(member_resources(m)),
                    f"{m.get('active_count', 0)} active, {m.get('inactive_count', 0)} inactive",
                    "now" if m.get("self") else _age(m.get("status_age_s")),
                    short_id(m.get("host_id"), long),
                ]
                for m in members
            ],
        )
    else:
        print("No mesh members match.")
    if not members:
        raise typer.Exit(EXIT_FAILED)


app.command("hosts")(hosts)
app.command("members", help="Alias of `hosts`.")(hosts)
app.command("summary")(_summary)
app.command("targets")(_targets)
