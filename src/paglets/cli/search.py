"""`paglets search grep|find`: search the files of every host where they are (cli.md §7,
jobs.md §7).

The command creates a `Searcher` (`paglets.examples.search`) on the entry host and starts
it; the searcher clones itself to each target host, searches there and sends back only
the hits, which the entry host records in its durable event log tagged with the search's
job id. This command follows that log over SSE (`/events/stream?job=<job id>`), prints
each hit as it arrives and writes them to `--output` (JSON lines) here, until the search
reports that it finished or `--timeout` (plus a short grace for the last report) passes.
`--detach` prints `submitted <job id> on <entry> output=<path>` and exits at once; the hits
then go to the entry host's console and to `--output` there.

Exit 0 when hits were found and every host answered; 1 when nothing was found or a host
failed (the hits found are still printed); 2 for bad options or an unreachable entry.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from paglets.cli.errors import EXIT_FAILED, CliError
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Quiet,
    Session,
    open_session,
    print_json,
    print_json_line,
)
from paglets.cli.values import option, parse_duration, parse_int, parse_size

__all__ = ["app"]

app = typer.Typer(
    name="search",
    help="Search files on every host where they are (grep, find); only hits come back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)

FINISH_GRACE = 15.0  # seconds after the timeout to wait for the searcher's final report
FILTER_PANEL = "Filters"
OUTPUT_PANEL = "Output"


def _count(flag: str) -> Any:
    return option(lambda t: parse_int(t, low=0, what=flag))


IgnoreCase = Annotated[bool, typer.Option("-i", "--ignore-case", help="Case-insensitive.")]
SmartCase = Annotated[
    bool, typer.Option("-S", "--smart-case", help="Case-insensitive unless PATTERN has capitals.")
]
Fixed = Annotated[bool, typer.Option("-F", "--fixed-strings", help="PATTERN is a literal.")]
Word = Annotated[bool, typer.Option("-w", "--word-regexp", help="Whole words only.")]
Globs = Annotated[
    list[str] | None,
    typer.Option(
        "-g",
        "--glob",
        metavar="G",
        help="Include files matching G; !G excludes (repeatable).",
        rich_help_panel=FILTER_PANEL,
    ),
]
Types = Annotated[
    list[str] | None,
    typer.Option(
        "-t",
        "--type",
        metavar="T",
        help="Only files of type T (see --type-list).",
        rich_help_panel=FILTER_PANEL,
    ),
]
TypesNot = Annotated[
    list[str] | None,
    typer.Option(
        "-T", "--type-not", metavar="T", help="No files of type T.", rich_help_panel=FILTER_PANEL
    ),
]
Hidden = Annotated[
    bool,
    typer.Option(
        "--hidden", help="Search hidden files and directories too.", rich_help_panel=FILTER_PANEL
    ),
]
NoIgnore = Annotated[
    bool,
    typer.Option(
        "--no-ignore",
        help="Do not honour .gitignore/.ignore; enter VCS dirs.",
        rich_help_panel=FILTER_PANEL,
    ),
]
Follow = Annotated[
    bool,
    typer.Option("-L", "--follow", help="Follow symbolic links.", rich_help_panel=FILTER_PANEL),
]
MaxDepth = Annotated[
    int,
    typer.Option(
        "--max-depth",
        metavar="N",
        parser=_count("--max-depth"),
        help="Descend at most N levels (0: no limit).",
        rich_help_panel=FILTER_PANEL,
    ),
]
MaxFileSize = Annotated[
    int,
    typer.Option(
        "--max-file-size",
        metavar="SIZE",
        parser=option(parse_size),
        help="Skip larger files (0: no limit).",
        rich_help_panel=FILTER_PANEL,
    ),
]
MaxResults = Annotated[
    int,
    typer.Option(
        "--max-results-per-host",
        metavar="N",
        parser=_count("--max-results-per-host"),
        help="Stop a host after N hits (0: no limit).",
    ),
]
AbsolutePath = Annotated[
    bool,
    typer.Option("--absolute-path", help="Print absolute paths.", rich_help_panel=OUTPUT_PANEL),
]
Hosts = Annotated[
    list[str] | None,
    typer.Option("--host", metavar="NAME|URL", help="Search this host (repeatable; default: all)."),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        parser=option(parse_duration),
        help="End the search after this long; hosts still searching are reported.",
    ),
]
Output = Annotated[
    Path,
    typer.Option(
        "--output",
        metavar="PATH",
        help="Write the hits here as JSON lines.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
JsonDoc = Annotated[
    bool, typer.Option("--json", help="One JSON document at the end.", rich_help_panel=OUTPUT_PANEL)
]
JsonLines = Annotated[
    bool,
    typer.Option(
        "--jsonl",
        help="Hits as JSON lines on stdout, as they arrive.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]
Detach = Annotated[
    bool, typer.Option("--detach", help="Start the search and exit; hits go to the entry host.")
]
TypeList = Annotated[bool, typer.Option("--type-list", help="List the file types and exit.")]


def _print_types() -> None:
    from paglets.examples.search_engine import FILE_TYPES

    for name in sorted(FILE_TYPES):
        print(f"{name}: {', '.join(FILE_TYPES[name])}")


# -- following the search ---------------------------------------------------------------------


class _Done(Exception):
    """The searcher's final report arrived."""


class _Follower:
    """Reads the entry host's event stream for one job until `_Done` or the deadline."""

    def __init__(self, session: Session, job_id: str, since: int, deadline: float) -> None:
        from paglets.cli.events import SseReader

        self.deadline = deadline
        self.expired = False
        self.finished: dict[str, Any] | None = None
        self.started: dict[str, Any] | None = None
        self.hits: list[dict[str, Any]] = []
        self.host_reports: dict[str, dict[str, Any]] = {}
        self.handlers: list[Any] = []
        follower = self

        class Reader(SseReader):
            def _connect(self) -> Any:
                if follower.expired:
                    raise _Done
                return super()._connect()

        self.reader = Reader(session, session.entry, {"job": job_id}, since, self._event)

    def _event(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        kind = event.get("kind")
        if kind == "user-info.stream":
            for line in str(data.get("text") or "").splitlines():
                try:
                    hit = json.loads(line)
                except ValueError:
                    continue
                if isinstance(hit, dict):
                    self.hits.append(hit)
                    for handler in self.handlers:
                        handler("hit", hit)
        elif kind == "user-info.notify":
            meta = data.get("metadata") or {}
            what = meta.get("search")
            if what == "started":
                self.started = meta
            elif what == "host-done":
                self.host_reports[str(meta.get("host"))] = meta
                for handler in self.handlers:
                    handler("host-done", meta)
            elif what == "finished":
                self.finished = meta
                raise _Done

    def run(self) -> None:
        def expire() -> None:
            self.expired = True
            self.reader.close()

        timer = threading.Timer(max(0.0, self.deadline - time.time()), expire)
        timer.daemon = True
        timer.start()
        try:
            self.reader.run()
        except _Done:
            pass
        finally:
            timer.cancel()
            self.reader.close()


# -- the commands -----------------------------------------------------------------------------


def _search(
    *,
    mode: str,
    pattern: str,
    paths: list[str] | None,
    options: dict[str, Any],
    host: list[str] | None,
    timeout: float,
    output: Path,
    json_: bool,
    jsonl: bool,
    detach: bool,
    entry: str | None,
    api_key_env: str | None,
    quiet: bool,
) -> None:
    from paglets.cli.events import EventLog
    from paglets.examples.search import SEARCHER_CLASS, format_hit
    from paglets.examples.search_engine import SearchOptions

    if timeout <= 0:
        raise CliError("--timeout: must be more than 0 seconds")
    try:
        request = SearchOptions(mode=mode, pattern=pattern, **options)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    session = open_session(entry, min(timeout, 30.0), api_key_env, json_ or jsonl, quiet)
    job_id = f"search-{uuid.uuid4().hex[:12]}"
    since = 0 if detach else EventLog(session, session.entry).last_id()
    state = {
        "job_id": job_id,
        "options": _wire(request),
        "paths": list(paths or ["."]),
        "targets": list(host or ()),
        "timeout": timeout,
        "output_path": str(output) if detach else "",
        "echo": detach,
    }
    client = session.client
    session.call(
        lambda: client.create_agent(
            session.entry,
            SEARCHER_CLASS,
            "paglets.examples.search:SearchState",
            state,
            agent_id=job_id,
        )
    )
    started = session.call(
        lambda: client.send_message(
            session.entry, job_id, _message("start"), timeout=timeout + FINISH_GRACE
        )
    )
    if detach:
        print(f"submitted {job_id} on {session.entry} output={output}")
        return
    began = time.time()
    follower = _Follower(session, job_id, since, began + timeout + FINISH_GRACE)
    out = _open_output(output)
    try:

        def on(kind: str, item: dict[str, Any]) -> None:
            if kind == "hit":
                out.write(json.dumps(item, sort_keys=True, ensure_ascii=False) + "\n")
                if jsonl:
                    print_json_line(item)
                elif not json_:
                    sys.stdout.write(format_hit(item) + "\n")
                    sys.stdout.flush()
            elif kind == "host-done" and item.get("errors"):
                for error in item["errors"]:
                    session.info(f"paglets search: {item.get('host')}: {error}")

        follower.handlers.append(on)
        follower.run()  # Ctrl-C ends the command; the search still ends by its timeout
    finally:
        out.close()
    _report(session, job_id, started, follower, output, json_, time.time() - began)


def _message(kind: str) -> Any:
    from paglets.core.messages import Message

    return Message(kind)


def _wire(options: Any) -> dict[str, Any]:
    import dataclasses

    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()
    }


def _open_output(path: Path) -> TextIO:
    try:
        path.expanduser().parent.mkdir(parents=True, exist_ok=True)
        return path.expanduser().open("w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"--output: cannot write {path}: {exc.strerror or exc}") from None


def _report(
    session: Session,
    job_id: str,
    started: Any,
    follower: _Follower,
    output: Path,
    json_: bool,
    seconds: float,
) -> None:
    finished = follower.finished or {}
    errors: dict[str, str] = dict(finished.get("errors") or {})
    if not follower.finished:
        errors.setdefault(
            "(search)",
            f"no final report from the entry host within {seconds:.0f}s; hits so far are shown",
        )
    for host, report in follower.host_reports.items():
        for error in report.get("errors") or ():
            errors.setdefault(f"{host}", str(error))
    if json_:
        print_json(
            {
                "job_id": job_id,
                "hits": follower.hits,
                "hosts": finished.get("hosts") or follower.host_reports,
                "timed_out": bool(finished.get("timed_out")),
                "errors": [
                    {"host": h, "error_type": "SearchError", "error": e, "code": None}
                    for h, e in sorted(errors.items())
                ],
                "output": str(output),
            }
        )
    hosts = finished.get("hosts") or follower.host_reports
    summary = (
        f"{len(follower.hits)} hit(s) from {len(hosts)} host(s) in {seconds:.1f}s "
        f"(job {job_id}, written to {output})"
    )
    session.info(summary)
    for host, error in sorted(errors.items()):
        session.info(f"paglets search: {host}: {error}")
    if errors or not follower.hits:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def grep(
    pattern: Annotated[str | None, typer.Argument(metavar="PATTERN", help="A regex.")] = None,
    paths: Annotated[
        list[str] | None,
        typer.Argument(metavar="[PATH]...", help="Where to search on each host (default: .)."),
    ] = None,
    ignore_case: IgnoreCase = False,
    smart_case: SmartCase = False,
    fixed_strings: Fixed = False,
    word: Word = False,
    glob: Globs = None,
    type_: Types = None,
    type_not: TypesNot = None,
    hidden: Hidden = False,
    no_ignore: NoIgnore = False,
    follow: Follow = False,
    max_depth: MaxDepth = 0,
    max_file_size: MaxFileSize = 0,
    max_results_per_host: MaxResults = 0,
    absolute_path: AbsolutePath = False,
    after: Annotated[
        int, typer.Option("-A", metavar="N", parser=_count("-A"), help="Lines after each match.")
    ] = 0,
    before: Annotated[
        int, typer.Option("-B", metavar="N", parser=_count("-B"), help="Lines before each match.")
    ] = 0,
    context: Annotated[
        int, typer.Option("-C", metavar="N", parser=_count("-C"), help="Lines before and after.")
    ] = 0,
    line_number: Annotated[
        bool, typer.Option("-n/-N", "--line-number/--no-line-number", help="Line numbers.")
    ] = True,
    count: Annotated[bool, typer.Option("-c", "--count", help="Matches per file.")] = False,
    files_with_matches: Annotated[
        bool, typer.Option("-l", "--files-with-matches", help="Only file names.")
    ] = False,
    files_without_match: Annotated[
        bool, typer.Option("--files-without-match", help="Files with no match.")
    ] = False,
    only_matching: Annotated[
        bool, typer.Option("-o", "--only-matching", help="Only the matched parts.")
    ] = False,
    max_count: Annotated[
        int,
        typer.Option(
            "-m",
            "--max-count",
            metavar="N",
            parser=_count("--max-count"),
            help="At most N matches per file.",
        ),
    ] = 0,
    column: Annotated[bool, typer.Option("--column", help="Column of the match.")] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", metavar="ENC", help="Text encoding.")
    ] = "utf-8",
    text: Annotated[bool, typer.Option("--text", help="Search binary files too.")] = False,
    host: Hosts = None,
    timeout: Timeout = 60.0,
    output: Output = Path("search.jsonl"),
    json_: JsonDoc = False,
    jsonl: JsonLines = False,
    detach: Detach = False,
    type_list: TypeList = False,
    entry: Entry = None,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Lines matching PATTERN in the files under PATH on every host."""
    if type_list:
        _print_types()
        return
    if not pattern:
        raise CliError(
            "search grep needs a PATTERN", hint="example: paglets search grep TODO ~/src"
        )
    _check_encoding(encoding)
    _search(
        mode="grep",
        pattern=pattern,
        paths=paths,
        options={
            **_common(ignore_case, smart_case, fixed_strings, word, glob, type_, type_not),
            "hidden": hidden,
            "no_ignore": no_ignore,
            "follow": follow,
            "max_depth": max_depth,
            "max_file_size": int(max_file_size or 0),
            "max_results_per_host": max_results_per_host,
            "absolute_path": absolute_path,
            "after": max(after, context),
            "before": max(before, context),
            "line_number": line_number,
            "count": count,
            "files_with_matches": files_with_matches,
            "files_without_match": files_without_match,
            "only_matching": only_matching,
            "max_count": max_count,
            "column": column,
            "encoding": encoding,
            "text": text,
        },
        host=host,
        timeout=timeout,
        output=output,
        json_=json_,
        jsonl=jsonl,
        detach=detach,
        entry=entry,
        api_key_env=api_key_env,
        quiet=quiet,
    )


@app.command()
def find(
    pattern: Annotated[
        str | None, typer.Argument(metavar="[PATTERN]", help="A regex on names (default: all).")
    ] = None,
    paths: Annotated[
        list[str] | None,
        typer.Argument(metavar="[PATH]...", help="Where to search on each host (default: .)."),
    ] = None,
    ignore_case: IgnoreCase = False,
    smart_case: SmartCase = False,
    fixed_strings: Fixed = False,
    word: Word = False,
    glob: Globs = None,
    type_: Types = None,
    type_not: TypesNot = None,
    hidden: Hidden = False,
    no_ignore: NoIgnore = False,
    follow: Follow = False,
    max_depth: MaxDepth = 0,
    max_file_size: MaxFileSize = 0,
    max_results_per_host: MaxResults = 0,
    absolute_path: AbsolutePath = False,
    full_path: Annotated[
        bool, typer.Option("--full-path", help="Match PATTERN against the whole path.")
    ] = False,
    extension: Annotated[
        list[str] | None,
        typer.Option("-e", "--extension", metavar="EXT", help="Only this extension (repeatable)."),
    ] = None,
    kind: Annotated[
        str,
        typer.Option("--kind", metavar="any|file|dir|symlink", help="Only entries of this kind."),
    ] = "any",
    host: Hosts = None,
    timeout: Timeout = 60.0,
    output: Output = Path("search.jsonl"),
    json_: JsonDoc = False,
    jsonl: JsonLines = False,
    detach: Detach = False,
    type_list: TypeList = False,
    entry: Entry = None,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Files and directories whose name matches PATTERN under PATH on every host."""
    if type_list:
        _print_types()
        return
    _search(
        mode="find",
        pattern=pattern or "",
        paths=paths,
        options={
            **_common(ignore_case, smart_case, fixed_strings, word, glob, type_, type_not),
            "hidden": hidden,
            "no_ignore": no_ignore,
            "follow": follow,
            "max_depth": max_depth,
            "max_file_size": int(max_file_size or 0),
            "max_results_per_host": max_results_per_host,
            "absolute_path": absolute_path,
            "full_path": full_path,
            "extensions": tuple(extension or ()),
            "kind": kind.lower(),
        },
        host=host,
        timeout=timeout,
        output=output,
        json_=json_,
        jsonl=jsonl,
        detach=detach,
        entry=entry,
        api_key_env=api_key_env,
        quiet=quiet,
    )


def _common(
    ignore_case: bool,
    smart_case: bool,
    fixed_strings: bool,
    word: bool,
    glob: list[str] | None,
    types: list[str] | None,
    types_not: list[str] | None,
) -> dict[str, Any]:
    return {
        "ignore_case": ignore_case,
        "smart_case": smart_case,
        "fixed_strings": fixed_strings,
        "word": word,
        "globs": tuple(glob or ()),
        "types": tuple(types or ()),
        "types_not": tuple(types_not or ()),
    }


def _check_encoding(name: str) -> None:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        raise CliError(
            f"--encoding: unknown text encoding {name!r} (examples: utf-8, latin-1)"
        ) from None
