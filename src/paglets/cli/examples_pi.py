"""`paglets examples pi --digits N` (cli.md §8, jobs.md §7): batch compute jobs compute
digits of pi; the digits arrive here in order, streamed over the entry host's event log.

The driver (`paglets.examples.pi.PiDriver`) runs on the entry host; this command follows
its stream: digit lines go to stdout as one run of digits (as they arrive), notes (`#`
lines: the plan, retries) to stderr. The digits are written to `--output` at the end.
Exit 0 when every digit arrived, 1 otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from paglets.cli.errors import CliError
from paglets.cli.session import ApiKeyEnv, Entry, Json, Quiet, open_session
from paglets.cli.values import option, parse_duration, parse_int, parse_size

__all__ = ["pi"]

DRIVER = "paglets.examples.pi:PiDriver"
NO_TIMEOUT = 7 * 24 * 3600.0  # `--timeout 0`: none (a week stands for "never")


def _count(flag: str, low: int) -> Callable[[Any], int]:
    return option(lambda t: parse_int(t, low=low, what=flag))


def pi(
    start: Annotated[
        int,
        typer.Option("--start", metavar="N", parser=_count("--start", 0), help="First digit."),
    ] = 0,
    digits: Annotated[
        int,
        typer.Option(
            "--digits", metavar="N", parser=_count("--digits", 1), help="How many digits."
        ),
    ] = 16,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            metavar="N",
            parser=_count("--batch-size", 1),
            help="Digits per compute job.",
        ),
    ] = 1,
    max_in_flight: Annotated[
        int,
        typer.Option(
            "--max-in-flight",
            metavar="N",
            parser=_count("--max-in-flight", 0),
            help="Batches submitted at a time (0: all at once).",
        ),
    ] = 0,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            metavar="N",
            parser=_count("--retries", 0),
            help="Rounds of re-creating failed or lost batches.",
        ),
    ] = 3,
    cores: Annotated[
        int,
        typer.Option("--cores", metavar="N", parser=_count("--cores", 1), help="Cores per job."),
    ] = 1,
    mem: Annotated[
        int | None,
        typer.Option("--mem", metavar="SIZE", parser=option(parse_size), help="Memory per job."),
    ] = None,
    temp: Annotated[
        int | None,
        typer.Option(
            "--temp", metavar="SIZE", parser=option(parse_size), help="Temp space per job."
        ),
    ] = None,
    fail_batch: Annotated[
        list[int] | None,
        typer.Option("--fail-batch", hidden=True, help="Batches that fail their first attempt."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", metavar="PATH", help="Where the digits are written.")
    ] = Path("pi.txt"),
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
            help="How long it may take (enforced; 0: no limit).",
        ),
    ] = 0.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Compute digits of pi with batch compute jobs; print them in order as they arrive."""
    from paglets.cli.examples_follow import finish, run_streamed_example

    limit = timeout if timeout > 0 else NO_TIMEOUT
    session = open_session(entry, min(limit, 30.0), api_key_env, json_, quiet)
    printed = [False]

    def on_line(line: str) -> None:
        if line.startswith("#"):
            session.info(line)
        elif not json_:
            sys.stdout.write(line)
            sys.stdout.flush()
            printed[0] = True

    outcome = run_streamed_example(
        session,
        DRIVER,
        name="pi",
        options={
            "start": start,
            "digits": digits,
            "batch_size": batch_size,
            "max_in_flight": max_in_flight,
            "retries": retries,
            "cores": cores,
            "mem": mem,
            "temp": temp,
            "fail_batches": list(fail_batch or ()),
        },
        timeout=limit,
        detach=detach,
        echo=False,
        on_line=on_line,
    )
    if printed[0]:
        sys.stdout.write("\n")
        sys.stdout.flush()
    result = outcome.result
    if outcome.ok:
        try:
            target = output.expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(str(result.get("digits", "")) + "\n")
        except OSError as exc:
            raise CliError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
        hosts = ", ".join(f"{h}: {n}" for h, n in sorted((result.get("hosts") or {}).items()))
        session.info(
            f"{result.get('count')} digit(s) in {result.get('batches')} batch(es) "
            f"({hosts}); {result.get('retried')} retried; written to {output}"
        )
    finish(session, "pi", outcome, {"result": result, "output": str(output)})
