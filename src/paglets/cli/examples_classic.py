"""`paglets examples classic NAME` (cli.md §8, jobs.md §7): the Aglets classics.

The classic's driver (`paglets.examples.classic`) runs on the entry host and streams what
happens into the entry host's event log; this command follows it (over SSE) and prints
it. Exit 0 when the classic ran to its end, 1 when it failed or `--timeout` passed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from paglets.cli.errors import CliError
from paglets.cli.session import ApiKeyEnv, Entry, Json, Quiet, open_session
from paglets.cli.values import option, parse_duration

__all__ = ["classic"]

NAMES = (
    "hello",
    "clone-workers",
    "finder",
    "itinerary",
    "master-slave",
    "message-patterns",
    "mobility-events",
)


def classic(
    name: Annotated[str, typer.Argument(metavar="NAME", help=f"One of: {', '.join(NAMES)}.")],
    n: Annotated[
        int, typer.Option("--n", metavar="N", help="clone-workers: how many squares to add up.")
    ] = 200_000,
    detach: Annotated[
        bool, typer.Option("--detach", help="Print the job id and exit; it runs on.")
    ] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            parser=option(parse_duration),
            help="How long the classic may take (enforced; what it made is disposed).",
        ),
    ] = 60.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Run an Aglets classic: hello, clone-workers, finder, itinerary, master-slave,
    message-patterns, mobility-events."""
    from paglets.cli.examples_follow import finish, run_streamed_example
    from paglets.examples.classic import CLASSICS, driver_class

    if name not in CLASSICS:
        raise CliError(
            f"NAME: no classic named {name!r} (known: {', '.join(NAMES)})",
            hint="paglets examples classic hello",
        )
    if n < 1:
        raise CliError("--n: must be at least 1")
    session = open_session(entry, min(timeout, 30.0), api_key_env, json_, quiet)
    outcome = run_streamed_example(
        session,
        driver_class(name),
        name=name,
        options={"n": n},
        timeout=timeout,
        detach=detach,
        echo=not json_,
    )
    finish(
        session,
        f"classic {name}",
        outcome,
        {"example": name, "lines": outcome.lines, "result": outcome.result},
    )
