"""`paglets examples mesh-benchmark` (cli.md §8, jobs.md §7): a traveller over every
directed host pair; the movement-cost matrix printed and saved as JSON (`--output`).

The benchmark's driver (`paglets.examples.mesh_benchmark`) runs on the entry host and
streams each hop and the matrix into the entry host's event log; this command follows it
over SSE, prints it, and writes the full result (hosts, clock offsets, every hop, the
matrix) to `--output`. Exit 0 when every hop was measured, 1 otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from paglets.cli.errors import CliError
from paglets.cli.session import ApiKeyEnv, Entry, Json, Quiet, open_session
from paglets.cli.values import option, parse_duration, parse_int, parse_size

__all__ = ["mesh_benchmark"]

DRIVER = "paglets.examples.mesh_benchmark:BenchmarkDriver"


def mesh_benchmark(
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            metavar="N",
            parser=option(lambda t: parse_int(t, low=1, what="--repeats")),
            help="How many times every pair is measured.",
        ),
    ] = 1,
    payload_size: Annotated[
        int,
        typer.Option(
            "--payload-size",
            metavar="SIZE",
            parser=option(parse_size),
            help="Bytes the traveller carries in its state (e.g. 64K, 1M).",
        ),
    ] = 0,
    exclude_self: Annotated[
        bool, typer.Option("--exclude-self", help="No hops from a host to itself.")
    ] = False,
    clock_probes: Annotated[
        int,
        typer.Option(
            "--clock-probes",
            metavar="N",
            parser=option(lambda t: parse_int(t, low=0, what="--clock-probes")),
            help="Round trips per host to estimate its clock offset (0: trust the clocks).",
        ),
    ] = 5,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", metavar="NAME|URL", help="Only these hosts (and the entry; repeatable)."
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", metavar="PATH", help="Where the JSON result goes.")
    ] = Path("mesh-benchmark.json"),
    digits: Annotated[
        int | None, typer.Option("--digits", hidden=True, help="Accepted for paglets 2.0.")
    ] = None,
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
            help="How long the whole benchmark may take (enforced).",
        ),
    ] = 600.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Time a traveller's moves between every two hosts; print and save the cost matrix."""
    from paglets.cli.examples_follow import finish, run_streamed_example

    session = open_session(entry, min(timeout, 30.0), api_key_env, json_, quiet)
    if digits is not None:
        session.info(
            "paglets examples mesh-benchmark: --digits has no effect here (it belongs to "
            "`paglets examples pi`)",
            with_json=True,
        )
    outcome = run_streamed_example(
        session,
        DRIVER,
        name="mesh-benchmark",
        options={
            "repeats": repeats,
            "payload_size": int(payload_size or 0),
            "exclude_self": exclude_self,
            "clock_probes": clock_probes,
            "hosts": list(host or ()),
        },
        timeout=timeout,
        detach=detach,
        echo=not json_,
    )
    if outcome.ok:
        try:
            target = output.expanduser()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(outcome.result, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise CliError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
        session.info(f"saved to {output}")
    finish(session, "mesh-benchmark", outcome, {"result": outcome.result, "output": str(output)})
