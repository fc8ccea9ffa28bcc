"""`paglets jobs submit|results|retry|groups` (cli.md §4, jobs.md §4 and §8): job groups
from the command line.

A group's collector has the agent id `collector_agent_id(group)`, so any command that
names a group finds it by asking every alive, compatible member for that id in parallel
(`paglets.cli.fanout`; the first answer wins; proxies follow moves). `groups` lists
collectors on those members the same way, under one deadline, and names the hosts that did
not answer. `paglets.cli.jobs` adds these commands to its `app` with `register(app)`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED, CliError
from paglets.cli.fanout import FanOut, Target, fan_out, fanout_targets
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
from paglets.cli.values import option, parse_json_argument, parse_size
from paglets.core.messages import Message

__all__ = ["find_collector", "groups", "register", "results", "retry", "submit"]

COLLECTOR_PREFIX = "collector-"
GROUP_COLUMNS = (
    *("group", "status", "expected", "done", "failed", "cancelled", "running", "waiting"),
    *("collector", "home", "waiting home", "deadline", "policy", "bytes home", "bytes remote"),
)


def register(app: typer.Typer) -> None:
    """Add the group commands to `paglets jobs`."""
    app.command("submit")(submit)
    app.command("results")(results)
    app.command("retry")(retry)
    app.command("groups")(groups)


# -- finding collectors -------------------------------------------------------------------


def _on_members(session: Session, fn: Callable[[str], Any]) -> tuple[FanOut, list[Target]]:
    """fn(url) on every alive, compatible member at once, within one deadline."""
    targets = fanout_targets(session, None)
    return fan_out(session, targets, lambda t, _left: fn(t.url), timeout=session.timeout), targets


def _error_texts(result: FanOut) -> dict[str, str]:
    """The failed hosts by URL: `Type: message`, or that a host stayed silent."""
    return {
        f.url: "no answer before the deadline"
        if f.code == "no-answer"
        else f"{f.error_type}: {f.error}"
        for f in result.failures
    }


def find_collector(session: Session, group_id: str) -> tuple[str, str]:
    """(host URL, agent id) of the group's collector, asked of every member in parallel."""
    from paglets.system.compute_slots.groups import collector_agent_id

    agent_id = collector_agent_id(group_id)

    def ask(url: str) -> str:
        session.client.send_message(
            url, agent_id, Message("summary", {"limit": 0}), timeout=session.timeout
        )
        return url

    result, targets = _on_members(session, ask)
    if not result.answers:
        raise CliError(
            f"no collector for group {group_id!r} on any of {len(targets)} hosts",
            hint='list the groups with "paglets jobs groups"',
            code=EXIT_FAILED,
        )
    return result.answers[0][1], agent_id


def _ask(session: Session, url: str, agent_id: str, kind: str, args: dict[str, Any]) -> Any:
    return session.call(
        lambda: session.client.send_message(
            url, agent_id, Message(kind, args), timeout=session.timeout
        )
    )


def _all_members(session: Session, url: str, agent_id: str) -> dict[str, Any]:
    """The summary with every member's details (paged)."""
    offset: int | None = 0
    doc: dict[str, Any] = {}
    members: list[dict[str, Any]] = []
    while offset is not None:
        page = _ask(
            session, url, agent_id, "summary", {"offset": offset, "limit": 500, "details": True}
        )
        doc = page
        members.extend(page.get("members", []))
        offset = page.get("next_offset")
    doc["members"] = members
    return doc


# -- groups -------------------------------------------------------------------------------


def _when(ts: Any) -> str:
    if not ts:
        return "-"
    left = float(ts) - time.time()
    return f"in {left:.0f}s" if left > 0 else "passed"


def _bytes(n: Any) -> str:
    from paglets.cli.output import format_size

    return format_size(int(n or 0))


def _group_row(doc: dict[str, Any]) -> list[str]:
    return [
        str(doc.get("group_id") or "-"),
        str(doc.get("status") or "-"),
        str(doc.get("expected", 0)),
        str(doc.get("done", 0)),
        str(doc.get("failed", 0)),
        str(doc.get("cancelled", 0)),
        str(doc.get("running", 0)),
        str(doc.get("waiting", 0)),
        str(doc.get("collector_host_name") or "-"),
        str(doc.get("home_host_name") or "-"),
        "yes" if doc.get("waiting_for_home") else "no",
        _when(doc.get("deadline_at")),
        str(doc.get("artifact_policy") or "-"),
        _bytes(doc.get("artifact_bytes_home")),
        _bytes(doc.get("artifact_bytes_elsewhere")),
    ]


def list_group_summaries(session: Session) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every collector's summary on every member (in parallel), and the silent hosts."""

    def on_host(url: str) -> list[dict[str, Any]]:
        rows = session.client.list_agents(
            url, state="all", q=COLLECTOR_PREFIX, timeout=session.timeout
        )
        out = []
        for row in rows:
            agent_id = str(row.get("agent_id") or "")
            if not agent_id.startswith(COLLECTOR_PREFIX):
                continue
            if str(row.get("status") or row.get("state") or "active") not in ("active", "inactive"):
                continue
            doc = session.client.send_message(
                url, agent_id, Message("summary", {"limit": 0}), timeout=session.timeout
            )
            out.append(doc)
        return out

    result, _ = _on_members(session, on_host)
    seen: dict[str, dict[str, Any]] = {}
    for _, found in result.answers:
        for doc in found:
            seen.setdefault(str(doc.get("collector_agent_id") or doc.get("group_id")), doc)
    docs = sorted(seen.values(), key=lambda d: (-(d.get("created_at") or 0), d.get("group_id")))
    return docs, _error_texts(result)


def groups(
    group: Annotated[
        str | None,
        typer.Option("--group", metavar="G", help="One group: its members and failures."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Show a progress bar until done (exit 1 if any job failed)."),
    ] = False,
    entry: Entry = None,
    timeout: Timeout = 5.0,
    json_: Json = False,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Job groups: progress, collector host, home, deadline, artifact policy and bytes."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    if group is not None:
        url, agent_id = find_collector(session, group)
        if wait:
            _wait_group(session, url, agent_id, group)
        doc = _all_members(session, url, agent_id)
        if json_:
            print_json(doc)
        else:
            _print_group(doc)
        failed = doc.get("failed", 0) or doc.get("timed_out", 0) or doc.get("lost", 0)
        if failed and wait:
            raise typer.Exit(EXIT_FAILED)
        return
    docs, errors = list_group_summaries(session)
    if json_:
        print_json(
            {
                "groups": docs,
                "errors": [{"host": u, "error": e} for u, e in sorted(errors.items())],
            }
        )
    else:
        if docs:
            table("Job Groups", GROUP_COLUMNS, [_group_row(d) for d in docs])
        for url, error in sorted(errors.items()):
            session.info(f"no answer from {url}: {error}")
    if not docs or errors:
        raise typer.Exit(EXIT_FAILED)


def _print_group(doc: dict[str, Any]) -> None:
    table(f"Group {doc.get('group_id')}", GROUP_COLUMNS, [_group_row(doc)])
    rows = [
        [
            str(m.get("job_key")),
            str(m.get("state")),
            str(m.get("host_name") or "-"),
            str(m.get("attempt", 0)),
            short_id(m.get("agent_id")),
        ]
        for m in doc.get("members", [])
    ]
    table("Members", ("key", "state", "host", "attempt", "agent"), rows)
    failures = [m for m in doc.get("members", []) if m.get("error")]
    for m in failures:
        sys.stdout.write(f"\n{m['job_key']} {m['state']} ({m.get('kind') or '-'}): {m['error']}\n")
        tail = str(m.get("stderr_tail") or "").rstrip()
        if tail:
            sys.stdout.write("  " + tail.replace("\n", "\n  ") + "\n")
    sys.stdout.flush()


def _wait_group(session: Session, url: str, agent_id: str, group: str) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from paglets.cli.output import stderr_console

    show = not session.quiet and not session.json and sys.stderr.isatty()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=stderr_console(),
        disable=not show,
    ) as bar:
        task = bar.add_task(group, total=None)
        while True:
            doc = _ask(session, url, agent_id, "summary", {"limit": 0})
            bar.update(task, total=doc.get("expected") or None, completed=doc.get("terminal", 0))
            if doc.get("status") in ("COMPLETE", "CANCELLED") and not doc.get("waiting_for_home"):
                return doc
            time.sleep(0.5)  # a CLI watching a remote group; not a test
            try:
                url, agent_id = find_collector(session, group)
            except CliError:
                continue  # moving home: asked again next round


# -- results --------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_group_artifacts(
    session: Session, members: list[dict[str, Any]], directory: Path, *, move: bool
) -> tuple[list[Path], list[str]]:
    """Every member's artifacts into `directory/<job_key>/`, in parallel; size and SHA-256
    checked (a `.part` file resumes); with `move`, the remote copies are deleted after."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from paglets.cli.output import stderr_console

    work = [(m["job_key"], ref) for m in members for ref in m.get("artifacts", [])]
    total = sum(int(ref.get("size_bytes") or 0) for _, ref in work)
    done: list[Path] = []
    problems: list[str] = []
    show = not session.quiet and not session.json and sys.stderr.isatty()

    def fetch(item: tuple[str, dict[str, Any]]) -> Path:
        key, ref = item
        target_dir = directory / key
        target_dir.mkdir(parents=True, exist_ok=True)
        path = Path(session.client.download_artifact(ref, target_dir))
        size = path.stat().st_size
        if size != int(ref.get("size_bytes") or 0) or _sha256(path) != ref.get("sha256"):
            path.unlink(missing_ok=True)
            raise CliError(f"artifact {ref.get('name')} of {key}: size or SHA-256 mismatch")
        if move:
            session.client.delete_artifact(ref)
        return path

    with Progress(
        TextColumn("artifacts"),
        BarColumn(),
        DownloadColumn(),
        console=stderr_console(),
        disable=not show,
    ) as bar:
        task = bar.add_task("download", total=total)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = {pool.submit(fetch, item): item for item in work}
            for future in concurrent.futures.as_completed(futures):
                key, ref = futures[future]
                try:
                    done.append(future.result())
                except Exception as exc:
                    problems.append(f"{key}/{ref.get('name')}: {exc}")
                bar.advance(task, int(ref.get("size_bytes") or 0))
    return done, problems


def results(
    group: Annotated[str, typer.Argument(metavar="GROUP", help="The group id.")],
    download: Annotated[
        Path | None,
        typer.Option(
            "--download",
            metavar="DIR",
            help="Fetch every artifact into DIR/<job key>/ (verified, resumable).",
        ),
    ] = None,
    move: Annotated[
        bool, typer.Option("--move", help="With --download: delete the remote copies once fetched.")
    ] = False,
    entry: Entry = None,
    timeout: Timeout = 30.0,
    json_: Json = False,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Results and failures of a group; fetches its artifacts with --download."""
    if move and download is None:
        raise CliError("--move needs --download DIR")
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    url, agent_id = find_collector(session, group)
    doc = _all_members(session, url, agent_id)
    members = doc.get("members", [])
    files: list[Path] = []
    problems: list[str] = []
    if download is not None:
        files, problems = download_group_artifacts(session, members, download, move=move)
    if json_:
        print_json(
            {
                "group_id": group,
                "status": doc.get("status"),
                "members": members,
                "downloaded": [str(p) for p in files],
                "errors": problems,
            }
        )
    else:
        rows = [
            [
                str(m.get("job_key")),
                str(m.get("state")),
                str(m.get("host_name") or "-"),
                json.dumps(m.get("result"), sort_keys=True)[:60]
                if m.get("result") is not None
                else "-",
                str(len(m.get("artifacts", []))),
                str(m.get("error") or "-")[:60],
            ]
            for m in members
        ]
        table(
            f"Results of {group} ({doc.get('status')})",
            ("key", "state", "host", "result", "artifacts", "error"),
            rows,
        )
        if download is not None:
            session.info(f"{len(files)} artifacts in {download}")
        for problem in problems:
            session.info(f"not downloaded: {problem}")
    if problems or doc.get("failed") or doc.get("timed_out") or doc.get("lost"):
        raise typer.Exit(EXIT_FAILED)


# -- retry ----------------------------------------------------------------------------------


def retry(
    group: Annotated[str, typer.Argument(metavar="GROUP", help="The group id.")],
    lost: Annotated[
        bool, typer.Option("--lost", help="Also members marked lost (and timed out).")
    ] = False,
    entry: Entry = None,
    timeout: Timeout = 30.0,
    json_: Json = False,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Re-create the failed (with --lost also lost) members of a group from their initial
    state, on the collector's host."""
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    url, agent_id = find_collector(session, group)
    reply = _ask(
        session,
        url,
        agent_id,
        "retry_failed",
        {"include_lost": lost, "include_timed_out": lost},
    )
    if json_:
        print_json(reply)
    else:
        for row in reply.get("recreated", []):
            sys.stdout.write(f"{row['job_key']}  re-created as {short_id(row['agent_id'])}\n")
        for row in reply.get("errors", []):
            sys.stdout.write(f"{row['job_key']}  not re-created: {row['error']}\n")
        if not reply.get("recreated") and not reply.get("errors"):
            session.info(f"group {group}: nothing to retry")
    if reply.get("errors"):
        raise typer.Exit(EXIT_FAILED)


# -- submit ---------------------------------------------------------------------------------


def _state_dicts(state: str | None, states: Path | None, count: int) -> list[dict[str, Any]]:
    if state is not None and states is not None:
        raise CliError("give --state or --states, not both")
    if states is not None:
        try:
            lines = states.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise CliError(f"--states: cannot read {states}: {exc.strerror}") from None
        out = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as exc:
                    raise CliError(f"--states: line {n} of {states} is not JSON: {exc}") from None
        return out
    base = parse_json_argument(state) if state is not None else {}
    if not isinstance(base, dict):
        raise CliError("--state must be a JSON object (inline, @file.json or - for stdin)")
    return [dict(base) for _ in range(count)]


def submit(
    class_name: Annotated[
        str, typer.Argument(metavar="CLASS", help="The job paglet, module:qualname.")
    ],
    state: Annotated[
        str | None,
        typer.Option(
            "--state", metavar="JSON|@file", help="The job state (fields of its State class)."
        ),
    ] = None,
    states: Annotated[
        Path | None, typer.Option("--states", metavar="FILE.jsonl", help="One state per line.")
    ] = None,
    count: Annotated[int, typer.Option("--count", min=1, help="Jobs to submit with --state.")] = 1,
    group: Annotated[
        str | None,
        typer.Option("--group", metavar="ID", help="Group id (resumes a submission with that id)."),
    ] = None,
    collector_host: Annotated[
        str | None,
        typer.Option("--collector-host", metavar="H", help="Host of the collector (name or URL)."),
    ] = None,
    return_home: Annotated[
        bool, typer.Option("--return-home", help="The collector returns to this host when done.")
    ] = False,
    cores: Annotated[
        int | None, typer.Option("--cores", "--cpu-cores", min=1, help="CPU cores per job.")
    ] = None,
    mem: Annotated[
        int | None,
        typer.Option(
            "--mem", "--memory", metavar="SIZE", parser=option(parse_size), help="Memory per job."
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
            help="Temporary storage per job.",
        ),
    ] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="Jobs need a GPU.")] = False,
    gpu_memory: Annotated[
        int | None, typer.Option("--gpu-memory", metavar="MB", help="GPU memory (MB).")
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "--require-tag", metavar="T", help="Required host tag."),
    ] = None,
    prefer_tag: Annotated[list[str] | None, typer.Option("--prefer-tag", metavar="T")] = None,
    exclude_tag: Annotated[list[str] | None, typer.Option("--exclude-tag", metavar="T")] = None,
    exclude_host: Annotated[
        list[str] | None, typer.Option("--exclude-host", metavar="NAME_OR_URL")
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", metavar="KEY>=V", help="Host property constraint."),
    ] = None,
    allow_home: Annotated[
        bool, typer.Option("--allow-home", help="May run on the submitting host.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait with a progress bar until the group is done.")
    ] = False,
    entry: Entry = None,
    timeout: Timeout = 30.0,
    json_: Json = False,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Submit a job group (`submit_compute_job_group`) from the command line; prints the
    group and its collector."""
    from paglets.serialization.names import resolve_qualified_name
    from paglets.system.compute_slots.groups import HostAtUrl, submit_compute_job_group

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    try:
        job_cls = resolve_qualified_name(class_name)
        state_cls = job_cls.state_class()
    except Exception as exc:
        raise CliError(
            f"cannot import {class_name}: {exc}",
            hint="install the package that defines it here and on every host",
        ) from None
    overrides: dict[str, Any] = {}
    for name, value in (
        ("cpu_cores", cores),
        ("memory_bytes", mem),
        ("temp_storage_bytes", temp),
        ("gpu_memory_mb", gpu_memory),
    ):
        if value is not None:
            overrides[name] = value
    if gpu:
        overrides["requires_gpu"] = True
    if allow_home:
        overrides["allow_home_compute"] = True
    for name, values in (
        ("required_host_tags", tag),
        ("preferred_host_tags", prefer_tag),
        ("excluded_host_tags", exclude_tag),
        ("required_host_properties", where),
    ):
        if values:
            overrides[name] = tuple(values)
    if exclude_host:
        overrides["excluded_host_names"] = tuple(h for h in exclude_host if "://" not in h)
        overrides["excluded_host_urls"] = tuple(h for h in exclude_host if "://" in h)
    try:
        job_states = [state_cls(**{**d, **overrides}) for d in _state_dicts(state, states, count)]
    except TypeError as exc:
        raise CliError(f"--state: {exc} (fields of {state_cls.__qualname__})") from None
    collector_url = session.host_url(collector_host) if collector_host else None
    sub = session.call(
        lambda: submit_compute_job_group(
            HostAtUrl(session.entry, session.client),
            job_cls,
            job_states,
            collector_host_url=collector_url,
            group_id=group,
            return_home_when_complete=return_home,
        )
    )
    doc = {
        "group_id": sub.group_id,
        "collector": {"agent_id": sub.collector.agent_id, "host_url": sub.collector.host_url},
        "jobs": {k: p.agent_id for k, p in sub.jobs.items()},
        "creation_errors": sub.creation_errors,
        "warnings": sub.warnings,
    }
    if json_:
        print_json(doc)
    else:
        sys.stdout.write(
            f"group {sub.group_id}: {len(sub.jobs)} jobs, collector "
            f"{short_id(sub.collector.agent_id, True)} at {sub.collector.host_url}\n"
        )
        for warning in sub.warnings:
            session.info(f"warning: {warning}")
        for failure in sub.creation_errors:
            session.info(f"not created: {failure['job_key']}: {failure['error']}")
    if wait:
        url, agent_id = find_collector(session, sub.group_id)
        final = _wait_group(session, url, agent_id, sub.group_id)
        if final.get("failed"):
            raise typer.Exit(EXIT_FAILED)
    if sub.creation_errors:
        raise typer.Exit(EXIT_FAILED)
