"""`paglets jobs` (cli.md §4, jobs.md §8): compute jobs across the mesh.

* `hosts` and `status` (in `paglets.cli.jobs_hosts`) answer from the entry host's gossip
  table (`candidate_hosts` on the entry's `compute-slots`, and its membership view): no
  other host is asked.
* `queue`, `why`, `top`, `ps`, `history`, `cancel`, `rm` and `logs` fan out to every alive,
  compatible member in parallel under one `--timeout`, print what arrived and name the
  hosts that failed or stayed silent (`--host` narrows). Hosts answer `ps` from their
  `job_index`, never by reading every paglet's state.
* `submit`, `results`, `retry` and `groups` (job groups) live in `paglets.cli.jobs_groups`
  and are added here by its `register(app)`; `cancel`, `rm` and `logs` in
  `paglets.cli.jobs_control`.

`top` and `history` print the scheduler's typed rows (`ComputeJobRuntimeInfo`,
`JobHistoryRow`), the classes the server sends.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Annotated, Any

import msgspec
import typer

from paglets.cli import jobs_hosts
from paglets.cli.errors import EXIT_FAILED
from paglets.cli.fanout import FanOut, Hosts, Target, report_failures, with_errors
from paglets.cli.jobs_common import Long, ask_slots, secs, slots
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
    short_id,
    table,
)
from paglets.cli.values import parse_time

app = typer.Typer(
    name="jobs",
    help="Compute jobs: candidate hosts, queues, running jobs, history, cancel and logs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)


def _print_json_rows(key: str, rows: list[tuple[Target, Any]], result: FanOut) -> None:
    """`{key: [{"host": ..., **row}], "errors": [...]}`: each typed row with its host."""
    docs = [{"host": t.name, **msgspec.to_builtins(row)} for t, row in rows]
    print_json(with_errors({key: docs}, result.failures))


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    delta = ts - now
    if abs(delta) < 1:
        return "now"
    return f"in {delta:.0f}s" if delta > 0 else f"{-delta:.0f}s ago"


def _scheduler_status(session: Session, hosts: list[str] | None, **parts: Any) -> FanOut:
    """Every target host's `scheduler_status` (the `SchedulerStatusRequest` of `parts`)."""
    from paglets.system.compute_slots.contract import OP_SCHEDULER_STATUS

    request = slots().SchedulerStatusRequest(**parts)
    return ask_slots(session, hosts, OP_SCHEDULER_STATUS, request)


def _finish(session: Session, result: FanOut, empty: bool) -> None:
    report_failures(session, result.failures)
    if result.failures or empty:
        raise typer.Exit(EXIT_FAILED)


# -- fan-out views ----------------------------------------------------------------------------


def queue(
    host: Hosts = None,
    long: Long = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Queued requests on every host: position, priority, resources, waited, expected start."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    result = _scheduler_status(session, host, include_queue=True, include_leases=False)
    rows: list[tuple[Target, Any]] = [(t, q) for t, reply in result.answers for q in reply.queue]
    if json_:
        _print_json_rows("queue", rows, result)
    else:
        now = time.time()
        table(
            "Queued Jobs",
            (
                "host",
                "pos",
                "job",
                "group/key",
                "owner",
                "prio",
                "cores",
                "memory",
                "waited",
                "expected start",
                "first reason",
            ),
            [
                [
                    t.name,
                    str(q.position),
                    short_id(q.agent_id, long),
                    f"{q.group_id}/{q.job_key}" if q.group_id else "-",
                    q.owner,
                    str(q.effective_priority),
                    str(q.cpu_cores),
                    format_size(q.memory_bytes),
                    secs(q.waited_seconds),
                    _when(q.expected_start_at, now),
                    q.first_reason or "-",
                ]
                for t, q in rows
            ],
        )
    _finish(session, result, False)


def top(
    host: Hosts = None,
    watch: Annotated[
        float, typer.Option("--watch", metavar="SECONDS", help="Refresh every N seconds.")
    ] = 0.0,
    long: Long = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Running jobs: pid, CPU ids, CPU %, efficiency, RSS, work bytes, runtime, walltime left."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    while True:
        result = _scheduler_status(
            session,
            host,
            include_queue=False,
            include_leases=False,
            include_jobs=True,
            include_usage=True,
        )
        rows = [(t, j) for t, reply in result.answers for j in reply.jobs]
        if json_:
            _print_json_rows("jobs", rows, result)
        else:
            table(
                "Running Jobs",
                (
                    "host",
                    "job",
                    "pid",
                    "cpu ids",
                    "cpu %",
                    "eff",
                    "rss",
                    "max rss",
                    "work",
                    "runtime",
                    "walltime left",
                ),
                [
                    [
                        t.name,
                        short_id(j.agent_id, long),
                        str(j.pid or "-"),
                        ",".join(map(str, j.cpu_core_ids)) or "-",
                        f"{j.cpu_percent:.0f}",
                        f"{j.efficiency:.2f}",
                        format_size(j.rss_bytes),
                        format_size(j.max_rss_bytes),
                        format_size(j.work_bytes),
                        secs(j.runtime_seconds),
                        secs(j.walltime_left_seconds),
                    ]
                    for t, j in rows
                ],
            )
        if watch <= 0 or json_:
            break
        report_failures(session, result.failures)
        time.sleep(watch)
    _finish(session, result, False)


def ps(
    host: Hosts = None,
    active: Annotated[bool, typer.Option("--active", help="Only active paglets.")] = False,
    inactive: Annotated[bool, typer.Option("--inactive", help="Only inactive ones.")] = False,
    state: Annotated[list[str] | None, typer.Option("--state", metavar="S")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", metavar="G")] = None,
    class_: Annotated[list[str] | None, typer.Option("--class", metavar="NAME")] = None,
    owner: Annotated[list[str] | None, typer.Option("--owner", metavar="O")] = None,
    job: Annotated[list[str] | None, typer.Option("--job", metavar="JOB")] = None,
    agent: Annotated[list[str] | None, typer.Option("--agent", metavar="ID")] = None,
    long: Long = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Compute jobs and collectors on every host (from each host's job_index)."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    rows, result = list_jobs(
        session, host, states=state, groups=group, classes=class_, owners=owner
    )
    wanted = [*(job or ()), *(agent or ())]
    if wanted:
        rows = [(t, r) for t, r in rows if any(_matches(r, w) for w in wanted)]
    if active:
        rows = [(t, r) for t, r in rows if r.active]
    if inactive:
        rows = [(t, r) for t, r in rows if not r.active]
    if json_:
        _print_json_rows("jobs", rows, result)
    else:
        now = time.time()
        table(
            "Compute Jobs",
            (
                "job",
                "kind",
                "host",
                "compute status",
                "status",
                "group/key",
                "attempt",
                "active",
                "since",
                "class",
            ),
            [
                [
                    short_id(r.agent_id, long),
                    r.kind,
                    t.name,
                    r.compute_status,
                    r.status or "-",
                    f"{r.group_id}/{r.job_key}" if r.group_id else "-",
                    str(r.attempt),
                    "yes" if r.active else "no",
                    _when(r.since, now),
                    r.agent_class,
                ]
                for t, r in rows
            ],
        )
    _finish(session, result, not rows)


def _matches(row: Any, ref: str) -> bool:
    if "/" in ref and not ref.startswith("compute-job-"):
        g, _, k = ref.partition("/")
        return row.group_id == g and row.job_key == k
    ref = ref.removeprefix("compute-job-")
    return row.agent_id == ref or (len(ref) >= 6 and row.agent_id.startswith(ref))


def list_jobs(
    session: Session,
    hosts: list[str] | None,
    *,
    states: list[str] | None = None,
    groups: list[str] | None = None,
    classes: list[str] | None = None,
    owners: list[str] | None = None,
) -> tuple[list[tuple[Target, Any]], FanOut]:
    """Every host's `job_index` rows (filtered there), with the host each came from."""
    from paglets.system.compute_slots.contract import OP_LIST_JOBS

    cs = slots()
    request = cs.ListJobsRequest(
        states=tuple(s.upper() for s in states or ()),
        group_ids=tuple(groups or ()),
        classes=tuple(classes or ()),
        owners=tuple(owners or ()),
        limit=100_000,
    )
    result = ask_slots(session, hosts, OP_LIST_JOBS, request)
    rows = [(t, r) for t, reply in result.answers for r in reply.rows]
    return rows, result


def history(
    host: Hosts = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows shown.")] = 20,
    since: Annotated[str | None, typer.Option("--since", metavar="TIME")] = None,
    group: Annotated[str | None, typer.Option("--group", metavar="G")] = None,
    long: Long = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Finished jobs (job_history of every host), newest first."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    after = parse_time(since, now=time.time()) if since else 0.0
    result = _scheduler_status(
        session,
        host,
        include_queue=False,
        include_leases=False,
        include_history=True,
        history_limit=max(limit, 1) * 4 if group else max(limit, 1),
    )
    rows = [
        (t, h)
        for t, reply in result.answers
        for h in reply.history
        if h.finished_at >= after and (not group or h.group_id == group)
    ]
    rows.sort(key=lambda th: th[1].finished_at, reverse=True)
    rows = rows[:limit]
    if json_:
        _print_json_rows("history", rows, result)
    else:
        now = time.time()
        table(
            "Job History",
            (
                "finished",
                "host",
                "job",
                "attempt",
                "reason",
                "exit",
                "wait",
                "run",
                "cpu s",
                "eff",
                "max rss",
                "error",
            ),
            [
                [
                    _when(h.finished_at, now),
                    t.name,
                    short_id(h.agent_id, long),
                    str(h.attempt),
                    h.finish_reason,
                    "-" if h.exit_code is None else str(h.exit_code),
                    secs(h.wait_seconds),
                    secs(h.run_seconds),
                    f"{h.cpu_seconds:.1f}",
                    f"{h.efficiency:.2f}",
                    format_size(h.max_rss_bytes),
                    (h.error or "-")[:60],
                ]
                for t, h in rows
            ],
        )
    _finish(session, result, False)


app.command("hosts")(jobs_hosts.hosts)
app.command("status")(jobs_hosts.status)
app.command("queue")(queue)
app.command("top")(top)
app.command("ps")(ps)
app.command("history")(history)

# why, cancel, rm, logs
from paglets.cli import jobs_control  # noqa: E402

jobs_control.register(app)

# Job groups (`submit`, `results`, `retry`, `groups`): another module, when present.
if importlib.util.find_spec("paglets.cli.jobs_groups") is not None:
    from paglets.cli import jobs_groups

    jobs_groups.register(app)
