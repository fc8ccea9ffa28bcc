"""`paglets jobs why|cancel|rm|logs` (cli.md §4, jobs.md §2.11, §8).

`JOB` is an agent id or a unique prefix (6+ characters), `compute-job-<agent>` or
`GROUP/KEY`. Jobs are found through every host's `job_index` (one parallel fan-out);
then each job is asked on the host it is on:

* `why`: the schedulers' `explain_wait` (every host, in parallel); a job no scheduler
  holds (placing, or between hosts) answers for itself (`compute_status`): its
  placement note and next attempt.
* `cancel`: `compute_cancel` to each job: it leaves its queue, or its process is stopped
  (SIGTERM, grace, SIGKILL), and it ends `CANCELLED`.
* `rm`: paglets 2.0's command made consistent: queue entry and paglet go together
  (cancel, then dispose); running jobs are never removed.
* `logs`: the captured output of an attempt, from the host the job ran on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import typer

from paglets.cli.errors import EXIT_FAILED, EXIT_USAGE, CliError
from paglets.cli.fanout import Hosts, Target, call_service, report_failures, with_errors
from paglets.cli.jobs_common import Long, ask_slots, compute_contract
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
from paglets.core.messages import Message

__all__ = ["cancel", "logs", "register", "resolve", "rm", "why"]

TERMINAL = ("COMPLETED", "FAILED_FINAL", "CANCELLED")


def register(app: typer.Typer) -> None:
    app.command("why")(why)
    app.command("cancel")(cancel)
    app.command("rm")(rm)
    app.command("logs")(logs)


def resolve(rows: list[tuple[Target, Any]], refs: list[str]) -> list[tuple[Target, Any]]:
    """The rows `refs` name; an unknown or ambiguous reference is an error (exit 2)."""
    from paglets.cli.jobs import _matches

    out: list[tuple[Target, Any]] = []
    for ref in refs:
        exact = ref.removeprefix("compute-job-")
        hits = [(t, r) for t, r in rows if r.agent_id == exact]
        if not hits:
            hits = [(t, r) for t, r in rows if _matches(r, ref)]
        if not hits:
            if len(exact) < 6 and "/" not in ref:
                raise CliError(
                    f"{ref!r}: a job id prefix needs at least 6 characters", code=EXIT_USAGE
                )
            raise CliError(
                f"no compute job {ref!r} on any host that answered",
                hint="list jobs with: paglets jobs ps",
                code=EXIT_FAILED,
            )
        agents = {r.agent_id for _, r in hits}
        if len(agents) > 1:
            shown = ", ".join(sorted(agents)[:8])
            raise CliError(f"{ref!r} is ambiguous: {shown}", code=EXIT_USAGE)
        for hit in hits:
            if hit not in out:
                out.append(hit)
    return out


def _tell(session: Session, url: str, agent_id: str, kind: str, args: dict[str, Any]) -> Any:
    return session.client.send_message(url, agent_id, Message(kind, args), timeout=session.timeout)


# -- why -------------------------------------------------------------------------------------


def why(
    jobs: Annotated[list[str] | None, typer.Argument(metavar="[JOB]...")] = None,
    group: Annotated[str | None, typer.Option("--group", metavar="G")] = None,
    host: Hosts = None,
    long: Long = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Why each job waits, from the scheduler of the host it waits on (jobs.md §2.11)."""
    from paglets.cli.jobs import list_jobs
    from paglets.system.compute_slots import ExplainWaitRequest
    from paglets.system.compute_slots.contract import OP_EXPLAIN_WAIT

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    rows, listed = list_jobs(session, host, groups=[group] if group else None)
    chosen = resolve(rows, list(jobs)) if jobs else rows
    if not chosen and not group:
        chosen = [(t, r) for t, r in rows if r.compute_status not in TERMINAL]
    agent_ids = tuple(r.agent_id for _, r in chosen)
    request = ExplainWaitRequest(agent_ids=agent_ids, group_ids=(group,) if group else ())
    result = ask_slots(session, host, OP_EXPLAIN_WAIT, request)
    items: list[dict[str, Any]] = []
    explained: set[str] = set()
    for t, reply in result.answers:
        for item in reply.items:
            explained.add(item.agent_id)
            items.append({"host": t.name, **msgspec.to_builtins(item)})
    for t, r in chosen:  # not in any queue: the job answers for itself
        if r.agent_id in explained:
            continue
        doc: dict[str, Any] = {
            "host": t.name,
            "agent_id": r.agent_id,
            "job_id": r.job_id,
            "state": r.compute_status.lower(),
            "reasons": [],
        }
        if r.compute_status not in TERMINAL:
            try:
                info = _tell(session, t.url, r.agent_id, "compute_status", {})
                note = str((info or {}).get("placement_note") or "")
                if note:
                    doc["reasons"] = [
                        {
                            "code": "placing",
                            "message": note,
                            "until": (info or {}).get("next_attempt_at") or None,
                        }
                    ]
            except Exception as exc:  # shown, not fatal
                doc["reasons"] = [{"code": "unknown", "message": f"{type(exc).__name__}: {exc}"}]
        items.append(doc)
    if json_:
        print_json(with_errors({"items": items}, [*listed.failures, *result.failures]))
    else:
        table(
            "Why Jobs Wait",
            ("job", "host", "state", "position", "waited", "reasons"),
            [
                [
                    short_id(i.get("agent_id"), long),
                    str(i["host"]),
                    str(i.get("state")),
                    str(i.get("position") or "-"),
                    f"{i.get('waited_seconds', 0):.0f}s",
                    "; ".join(f"{x['code']}: {x['message']}" for x in i.get("reasons") or ())
                    or "-",
                ]
                for i in items
            ],
        )
        report_failures(session, result.failures)
    if not items or result.failures:
        raise typer.Exit(EXIT_FAILED)


# -- cancel and rm ---------------------------------------------------------------------------


def _confirm(force: bool, verb: str, ids: list[str]) -> None:
    if force:
        return
    if not sys.stdin.isatty():
        raise CliError(
            f"refusing to {verb} without confirmation: not a terminal",
            hint="pass --force (-f) to go ahead without asking",
            code=EXIT_USAGE,
        )
    if not typer.confirm(f"{verb.capitalize()} {len(ids)} job(s)?", default=False):
        raise typer.Exit(EXIT_FAILED)


def _select(
    session: Session,
    host: list[str] | None,
    refs: list[str],
    group: str | None,
    states: list[str],
    all_: bool,
) -> tuple[list[tuple[Target, Any]], Any]:
    from paglets.cli.jobs import list_jobs

    if not (refs or group or states or all_):
        raise CliError("name the jobs: JOB..., --group G, --state S or --all", code=EXIT_USAGE)
    rows, listed = list_jobs(
        session, host, groups=[group] if group else None, states=states or None
    )
    chosen = resolve(rows, refs) if refs else rows
    return chosen, listed


def cancel(
    jobs: Annotated[list[str] | None, typer.Argument(metavar="[JOB]...")] = None,
    group: Annotated[str | None, typer.Option("--group", metavar="G")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", metavar="S")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every non-terminal job.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n")] = False,
    force: Annotated[bool, typer.Option("--force", "-f")] = False,
    host: Hosts = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Stop jobs: dequeued, or their process stopped (SIGTERM, grace, SIGKILL)."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    chosen, listed = _select(
        session, host, list(jobs or ()), group, [s.upper() for s in state or ()], all_
    )
    chosen = [(t, r) for t, r in chosen if r.compute_status not in TERMINAL and r.kind == "job"]

    def cancel_one(t: Target, r: Any) -> dict[str, Any]:
        return _tell(session, t.url, r.agent_id, "compute_cancel", {"reason": "cancelled"}) or {}

    done, errors = _each_job(chosen, listed, cancel_one, "cancel", dry_run, force)
    _print_done(session, "Cancelled Jobs", done, errors)
    if errors or not chosen:
        raise typer.Exit(EXIT_FAILED)


def rm(
    job: Annotated[list[str] | None, typer.Option("--job", metavar="JOB")] = None,
    agent: Annotated[list[str] | None, typer.Option("--agent", metavar="ID")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", metavar="S")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every job that is not running.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n")] = False,
    force: Annotated[bool, typer.Option("--force", "-f")] = False,
    host: Hosts = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Remove jobs: queue entry and paglet together; never running jobs."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    refs = [*(job or ()), *(agent or ())]
    states = [s.upper() for s in state or ()] or ([] if (refs or all_) else ["WAITING_FOR_SLOT"])
    chosen, listed = _select(session, host, refs, None, states, all_ or not refs)
    chosen = [(t, r) for t, r in chosen if r.compute_status != "RUNNING" and r.kind == "job"]

    def remove_one(t: Target, r: Any) -> dict[str, Any]:
        if r.compute_status not in TERMINAL:
            _tell(session, t.url, r.agent_id, "compute_cancel", {"reason": "removed"})
        session.client.dispose(t.url, r.agent_id, timeout=session.timeout)
        return {"removed": True}

    done, errors = _each_job(chosen, listed, remove_one, "remove", dry_run, force)
    _print_done(session, "Removed Jobs", done, errors)
    if errors or not chosen:
        raise typer.Exit(EXIT_FAILED)


def _each_job(
    chosen: list[tuple[Target, Any]],
    listed: Any,
    act: Callable[[Target, Any], dict[str, Any]],
    verb: str,
    dry_run: bool,
    force: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`act` on each chosen job, one after the other, once the user confirmed (unless
    `force` or `dry_run`): (what each answered, the errors), the errors starting with the
    hosts the listing could not ask."""
    ids = [r.agent_id for _, r in chosen]
    if not dry_run and ids:
        _confirm(force, verb, ids)
    done: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = [f.to_json() for f in listed.failures]
    for t, r in chosen:
        if dry_run:
            done.append({"agent_id": r.agent_id, "host": t.name, "dry_run": True})
            continue
        try:
            done.append({"agent_id": r.agent_id, "host": t.name, **act(t, r)})
        except Exception as exc:
            errors.append(
                {
                    "host": t.name,
                    "agent_id": r.agent_id,
                    "error_type": type(exc).__name__,
                    "error": str(exc),
                }
            )
    return done, errors


def _print_done(
    session: Session, title: str, done: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> None:
    if session.json:
        print_json({"jobs": done, **({"errors": errors} if errors else {})})
        return
    table(
        title,
        ("job", "host", "result"),
        [
            [
                short_id(d["agent_id"]),
                d["host"],
                "dry run" if d.get("dry_run") else str(d.get("compute_status") or "removed"),
            ]
            for d in done
        ],
    )
    if errors:
        table(
            "Errors",
            ("host", "job", "error"),
            [
                [
                    e.get("host", "-"),
                    short_id(e.get("agent_id")),
                    f"{e['error_type']}: {e['error']}",
                ]
                for e in errors
            ],
        )


# -- logs ------------------------------------------------------------------------------------


def logs(
    job: Annotated[str, typer.Argument(metavar="JOB")],
    attempt: Annotated[int, typer.Option("--attempt", help="Attempt (default: latest).")] = 0,
    stderr: Annotated[bool, typer.Option("--stderr", help="stderr instead of stdout.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")] = False,
    tail: Annotated[int, typer.Option("--tail", metavar="N", help="Last N lines.")] = 0,
    events: Annotated[bool, typer.Option("--events", help="Also its user-info events.")] = False,
    host: Hosts = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Captured output of a job's attempt, from the host it ran on."""
    from paglets.cli.jobs import list_jobs
    from paglets.system.compute_slots import JobLogsRequest
    from paglets.system.compute_slots.contract import OP_JOB_LOGS

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    rows, _listed = list_jobs(session, host)
    try:
        (target, row), *_ = resolve(rows, [job])
    except CliError:
        if not (job.startswith("compute-job-") or len(job) >= 32):
            raise
        # Gone from every job_index (disposed): ended attempts' logs are kept on the
        # host that ran them, so ask every host.
        _print_kept_logs(session, host, job, attempt, stderr, tail, json_)
        return
    contract = compute_contract()
    offset, chunks = 0, []
    while True:
        request = JobLogsRequest(
            job_id=row.job_id,
            attempt=attempt,
            stream="stderr" if stderr else "stdout",
            offset=offset,
        )
        reply = session.call(
            lambda req=request: call_service(session, target.url, contract, OP_JOB_LOGS, req)
        )
        if reply.data:
            if follow and not json_:
                sys.stdout.write(reply.data.decode("utf-8", "replace"))
                sys.stdout.flush()
            else:
                chunks.append(reply.data)
        offset = reply.next_offset
        if not reply.eof:
            continue
        if not follow or _ended(session, target, row.agent_id):
            break
        time.sleep(0.5)
    text = b"".join(chunks).decode("utf-8", "replace")
    if tail > 0:
        text = "".join(text.splitlines(keepends=True)[-tail:])
    if events:
        text += _events_text(session, target, row.agent_id)
    if json_:
        print_json({"job_id": row.job_id, "host": target.name, "text": text})
    elif text:
        sys.stdout.write(text)


def _print_kept_logs(
    session: Session,
    host: list[str] | None,
    job: str,
    attempt: int,
    stderr: bool,
    tail: int,
    json_: bool,
) -> None:
    from paglets.system.compute_slots import JobLogsRequest
    from paglets.system.compute_slots.contract import OP_JOB_LOGS

    job_id = f"compute-job-{job.removeprefix('compute-job-')}"
    request = JobLogsRequest(
        job_id=job_id,
        attempt=attempt,
        stream="stderr" if stderr else "stdout",
        max_bytes=1 << 20,
    )
    result = ask_slots(session, host, OP_JOB_LOGS, request)
    found = [(t, r) for t, r in result.answers if r.data]
    if not found:
        raise CliError(
            f"no compute job {job!r} and no kept logs of it on any host",
            hint="list jobs with: paglets jobs ps",
            code=EXIT_FAILED,
        )
    target, reply = found[0]
    text = reply.data.decode("utf-8", "replace")
    if tail > 0:
        text = "".join(text.splitlines(keepends=True)[-tail:])
    if json_:
        print_json({"job_id": job_id, "host": target.name, "text": text})
    else:
        sys.stdout.write(text)


def _ended(session: Session, target: Target, agent_id: str) -> bool:
    try:
        info = _tell(session, target.url, agent_id, "compute_status", {})
    except Exception:
        return True
    return str((info or {}).get("compute_status")) in TERMINAL


def _events_text(session: Session, target: Target, agent_id: str) -> str:
    """The job's user-info notifications recorded on the host it is on."""
    try:
        page = session.client.get_json(
            f"{target.url}/events?kind=user-info.notify,user-info.stream&limit=1000"
        )
    except Exception:
        return ""
    job_id = f"compute-job-{agent_id}"
    lines = []
    for e in (page or {}).get("events") or ():
        data = e.get("data") or {}
        if e.get("agent_id") == agent_id or job_id in (data.get("job"), data.get("job_id")):
            lines.append(
                f"[{data.get('severity', 'info')}] {data.get('title', '')}: "
                f"{data.get('message', data.get('text', ''))}\n"
            )
    return "".join(lines)
