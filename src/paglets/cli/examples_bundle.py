"""`paglets examples bundle [BUNDLE...] --jobs 20` (cli.md §8, jobs.md §4.6, §7): the
seed's `ds_dia` bundle jobs submitted from the entry host; the group summary printed.

The work is in `paglets.examples.bundle.run_bundle`; this module reads the options and
prints. Exit 0 when every job reported a result, 1 when some failed or `--timeout`
passed (the group is cancelled then), 2 for bad options or an unreachable entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED, CliError
from paglets.cli.session import ApiKeyEnv, Entry, Json, Quiet, open_session, print_json, table
from paglets.cli.values import option, parse_duration, parse_int, parse_size

__all__ = ["bundle"]

PLACEMENT = "Resources and placement"


def _count(flag: str, low: int) -> Any:
    return option(lambda t: parse_int(t, low=low, what=flag))


def bundle(
    bundles: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[BUNDLE]...",
            help="Bundle files (paths the compute hosts can read); default: synthetic ones.",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", metavar="N", parser=_count("--jobs", 1), help="Synthetic bundles to run."
        ),
    ] = 20,
    cores: Annotated[
        int,
        typer.Option(
            "--cores",
            "--cpu-cores",
            metavar="N",
            parser=_count("--cores", 1),
            help="Cores per job.",
            rich_help_panel=PLACEMENT,
        ),
    ] = 1,
    mem: Annotated[
        int | None,
        typer.Option(
            "--mem",
            "--memory",
            metavar="SIZE",
            parser=option(parse_size),
            help="Memory per job (64M).",
            rich_help_panel=PLACEMENT,
        ),
    ] = None,
    temp: Annotated[
        int | None,
        typer.Option(
            "--temp",
            "--disk",
            "--temp-storage",
            metavar="SIZE",
            parser=option(parse_size),
            help="Temp space per job (1M).",
            rich_help_panel=PLACEMENT,
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            "--require-tag",
            metavar="T",
            help="Required host tag (repeatable; default linux when a host has it).",
            rich_help_panel=PLACEMENT,
        ),
    ] = None,
    prefer_tag: Annotated[
        list[str] | None,
        typer.Option(
            "--prefer-tag", metavar="T", help="Preferred host tag.", rich_help_panel=PLACEMENT
        ),
    ] = None,
    exclude_tag: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-tag", metavar="T", help="Excluded host tag.", rich_help_panel=PLACEMENT
        ),
    ] = None,
    exclude_host: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude-host", metavar="NAME|URL", help="Excluded host.", rich_help_panel=PLACEMENT
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="KEY>=V",
            help="Host property constraint (repeatable; default python>=3.11).",
            rich_help_panel=PLACEMENT,
        ),
    ] = None,
    allow_home: Annotated[
        bool,
        typer.Option(
            "--allow-home", help="Jobs may run on the entry host too.", rich_help_panel=PLACEMENT
        ),
    ] = False,
    collector_tag: Annotated[
        str, typer.Option("--collector-tag", metavar="T", help="Where the collector goes.")
    ] = "collector",
    return_home: Annotated[
        bool,
        typer.Option(
            "--return-home/--no-return-home",
            help="The collector brings the results to the entry host when done.",
        ),
    ] = True,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            metavar="N",
            parser=_count("--retries", 0),
            help="Rounds of re-creating failed or lost jobs.",
        ),
    ] = 1,
    download: Annotated[
        Path | None,
        typer.Option("--download", metavar="DIR", help="Fetch every artifact into DIR."),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Keep the collector and its artifacts (see jobs results)."),
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Print the group and exit; it runs on.")
    ] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            parser=option(parse_duration),
            help="How long the group may take (enforced: cancelled then).",
        ),
    ] = 300.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """The seed's pattern: ds_dia bundle jobs with tags, a property constraint, artifacts,
    return home and retry; prints the group summary."""
    from paglets.examples.bundle import BundleOptions, run_bundle

    try:
        import ds_dia.compute.paglets  # noqa: F401
    except ImportError as exc:
        raise CliError(
            f"the ds_dia package is not importable here ({exc})",
            hint="run `uv sync` in the paglets repository (ds_dia is a workspace member)",
        ) from None
    session = open_session(entry, min(timeout, 30.0), api_key_env, json_, quiet)
    options = BundleOptions(
        jobs=jobs,
        bundles=list(bundles or ()),
        cores=cores,
        memory_bytes=mem or 64 << 20,
        temp_bytes=1 << 20 if temp is None else temp,
        tags=None if tag is None else list(tag),
        prefer_tags=list(prefer_tag or ()),
        exclude_tags=list(exclude_tag or ()),
        exclude_hosts=list(exclude_host or ()),
        where=["python>=3.11"] if where is None else list(where),
        allow_home=allow_home,
        collector_tag=collector_tag,
        return_home=return_home,
        retries=retries,
        timeout=timeout,
        download=download,
        keep=keep,
        detach=detach,
        json=json_,
        progress=not quiet,
    )
    try:
        doc = session.call(lambda: run_bundle(options, session.client, session.entry, session.info))
    except (ValueError, RuntimeError) as exc:
        raise CliError(f"{type(exc).__name__}: {exc}", code=EXIT_FAILED) from None
    if detach:
        if json_:
            print_json(doc)
        else:
            print(
                f"submitted {doc['group_id']} on {session.entry} "
                f"collector={doc['collector_agent_id']}@{doc['collector_host_url']}"
            )
        return
    if json_:
        print_json(doc)
    else:
        _print(doc)
    if not doc.get("ok"):
        raise typer.Exit(EXIT_FAILED)


def _print(doc: dict[str, Any]) -> None:
    group = str(doc.get("group_id"))
    rows = []
    for m in doc.get("members", []):
        refs = m.get("artifacts") or []
        where = ",".join(sorted({str(r.get("host_name") or "?") for r in refs})) or "-"
        size = sum(int(r.get("size_bytes") or 0) for r in refs)
        result = m.get("result")
        rows.append(
            [
                str(m.get("job_key") or "").removeprefix(f"{group}-"),
                str(m.get("state")),
                str(m.get("host_name") or "-"),
                str(m.get("attempt") or "-"),
                json.dumps(result) if result is not None else (m.get("error") or "-")[:60],
                f"{size} B on {where}" if refs else "-",
            ]
        )
    table(f"Group {group}", ("job", "state", "ran on", "attempt", "result", "artifact"), rows)
    ran: dict[str, int] = {}
    for m in doc.get("members", []):
        ran[m.get("host_name") or "?"] = ran.get(m.get("host_name") or "?", 0) + 1
    home = "home on " + str(doc.get("home_host_name")) if doc.get("at_home") else "not home"
    print(
        f"{doc.get('done')}/{doc.get('expected')} jobs reported "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(ran.items()))}); {doc.get('retried', 0)} "
        f"retried; collector {doc.get('status')} and {home}"
    )
    if doc.get("downloaded"):
        print(f"downloaded {len(doc['downloaded'])} artifact(s)")
    if doc.get("kept"):
        print(f"kept: paglets jobs results {group} --download DIR")
