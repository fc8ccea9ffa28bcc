"""`paglets demo` (cli.md §11): three hosts on loopback, a job group, the laptop away and
back, results home; the work is in `paglets.examples.demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from paglets.cli.values import option, parse_duration

app = typer.Typer(
    name="demo",
    help="The whole idea on one machine: 3 hosts, a job group, the laptop away and back.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)


@app.command()
def demo(
    hosts: Annotated[int, typer.Option("--hosts", min=2, max=9, help="Host processes.")] = 3,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Jobs in the group.")] = 12,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the hosts running and print what to try.")
    ] = False,
    dir: Annotated[
        Path | None,
        typer.Option("--dir", metavar="PATH", help="Where the hosts keep their data."),
    ] = None,
    base_port: Annotated[
        int, typer.Option("--base-port", help="First port (0: free ports).", min=0)
    ] = 0,
    laptop_away: Annotated[
        float,
        typer.Option(
            "--laptop-away",
            metavar="DURATION",
            parser=option(parse_duration),
            help="How long alpha stays away.",
        ),
    ] = 2.0,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", metavar="DURATION", parser=option(parse_duration), help="Give up after."
        ),
    ] = 120.0,
    json_: Annotated[bool, typer.Option("--json", help="The summary as JSON on stdout.")] = False,
) -> None:
    """Start hosts, submit a detached job group, take the laptop away and back, print the
    results; exit 0 when every job reported, 1 if some failed, 2 if the mesh did not start."""
    from paglets.examples.demo import DemoOptions, run_demo

    code = run_demo(
        DemoOptions(
            hosts=hosts,
            jobs=jobs,
            keep=keep,
            dir=dir,
            base_port=base_port,
            laptop_away=laptop_away,
            timeout=timeout,
            json=json_,
        )
    )
    raise typer.Exit(code)
