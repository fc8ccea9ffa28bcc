"""`paglets doctor`: for now only `paglets doctor import CLASS...` (cli.md section 10,
check 4; the mesh-wide doctor comes with membership).

It asks the entry host and every `--host`, in parallel, to import each class through the
same gate as a class name arriving from the network (`POST /diagnostics/import`,
network.md 1.8), and prints per host what the seed's manual check prints: the class, or
the exact failure with the host's code version and `sys.path` head. A paglet class's
state class is checked too. Exit 1 when any host failed.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED, EXIT_USAGE, CliError
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Session,
    Timeout,
    describe_error,
    open_session,
    print_json,
)
from paglets.core.errors import PagletError

__all__ = ["HostReport", "app", "diagnose_host"]

MAX_THREADS = 16
PATH_HEAD = 4  # sys.path entries shown for a failing host

app = typer.Typer(
    name="doctor",
    help="Check that the hosts can run your paglets (for now: doctor import CLASS...).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)


@app.callback()
def doctor() -> None:
    """Diagnose the hosts of a mesh."""


@dataclass(slots=True)
class HostReport:
    """One host's answer: its results per class name, or why it could not be asked."""

    url: str
    name: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # code_version, python, sys_path_head
    error: dict[str, Any] | None = None
    error_exit: int = 0  # cli.md 0.5's code for `error` (2: unreachable, key refused)
    error_hint: str | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r.get("ok") or r.get("error")]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    def to_wire(self) -> dict[str, Any]:
        return {
            "host": self.name,
            "url": self.url,
            "ok": self.ok,
            "results": self.results,
            "error": self.error,
            **self.facts,
        }


def _ask(session: Session, url: str, names: list[str], expect: str) -> dict[str, Any]:
    answer = session.client.post_json(
        f"{url}/diagnostics/import", {"names": names, "expect": expect}
    )
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), dict):
        raise PagletError(f"{url}/diagnostics/import answered without results: {answer!r}"[:300])
    return answer


def diagnose_host(session: Session, url: str, names: list[str]) -> HostReport:
    """Ask one host to import `names` (and the state classes of the paglet classes)."""
    report = HostReport(url)
    try:
        report.name = str(session.client.health(url).get("name") or "") or None
        answer = _ask(session, url, names, "any")
        results = [answer["results"][n] for n in names if n in answer["results"]]
        states = [
            r["state_class_name"]
            for r in results
            if r.get("ok") and r.get("kind") == "paglet" and r.get("state_class_name")
        ]
        states = [s for s in dict.fromkeys(states) if s not in names]
        if states:
            extra = _ask(session, url, states, "state")["results"]
            # Each state class right after its paglet class.
            results = [
                item
                for r in results
                for item in (r, extra.pop(r.get("state_class_name"), None))
                if item is not None
            ]
    except PagletError as exc:
        message, report.error_hint, report.error_exit = describe_error(exc, url)
        report.error = {
            "error_type": type(exc).__name__,
            "error": message,
            "code": exc.code,
        }
        return report
    report.results = results
    report.facts = {
        key: answer.get(key)
        for key in ("code_version", "python", "executable", "sys_path_head", "started_at_age_s")
    }
    return report


# -- printing -------------------------------------------------------------------------------


def _class_repr(name: str) -> str:
    module, _, qualname = name.partition(":")
    return f"<class '{module}.{qualname}'>"


def _print_report(report: HostReport) -> None:
    out = sys.stdout
    facts = report.facts
    title = report.name or "(no answer)"
    about = []
    if facts.get("code_version"):
        about.append(f"code version {facts['code_version']}")
    if facts.get("python"):
        about.append(f"python {facts['python']}")
    out.write(f"{title}  {report.url}" + (f"  ({', '.join(about)})" if about else "") + "\n")
    if report.error is not None:
        out.write(f"  FAIL  {report.error['error']}\n")
        return
    for result in report.results:
        name = str(result.get("name"))
        if result.get("ok") and not result.get("error"):
            kind = result.get("kind") or "class"
            extra = ""
            if kind == "paglet" and result.get("state_class_name"):
                extra = f", state class {result['state_class_name']}"
            out.write(f"  ok    {name}  {_class_repr(name)}  ({kind}{extra})\n")
            where = result.get("module_file") or "?"
            dist = result.get("distribution")
            if dist:
                where += f"  [{dist} {result.get('version') or '?'}]"
            out.write(f"        {where}\n")
            continue
        error_type = result.get("error_type") or "error"
        out.write(f"  FAIL  {name}  {error_type}: {result.get('error')}\n")
        if result.get("module_file"):
            out.write(f"        module file: {result['module_file']}\n")
        head = facts.get("sys_path_head") or []
        if head:
            shown = ", ".join(str(p) or "''" for p in head[:PATH_HEAD])
            out.write(f"        sys.path head: {shown}\n")
    out.flush()


def _summary(reports: list[HostReport]) -> CliError:
    """The one error line (and hint) for the hosts that failed."""
    broken = [r for r in reports if not r.ok]
    parts = []
    for report in broken:
        who = report.name or report.url
        if report.error is not None:
            parts.append(f"{who} could not be asked ({report.error['error']})")
        else:
            names = ", ".join(str(r.get("name")) for r in report.failed)
            parts.append(f"{who} cannot import {names}")
    first = next((r.failed[0] for r in broken if r.failed), None)
    hint = None
    if first is not None:
        module, _, qualname = str(first.get("name")).partition(":")
        top = qualname.split(".")[0]
        hint = (
            f'on that host run: python -c "from {module} import {top}; print({top})"; '
            "install the same code there (same checkout, wheel or version), keep the class "
            "top-level, and restart the host"
        )
    return CliError(
        f"{len(broken)} of {len(reports)} host(s) failed: " + "; ".join(parts),
        hint=hint,
        code=EXIT_FAILED,
    )


# -- the command ----------------------------------------------------------------------------


@app.command("import")
def import_(
    classes: Annotated[
        list[str],
        typer.Argument(metavar="CLASS...", help="Classes as module:QualName."),
    ],
    host: Annotated[
        list[str] | None,
        typer.Option("--host", metavar="NAME|URL", help="Also ask this host (repeatable)."),
    ] = None,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 20.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Can each host import these classes? Prints, per host, each class or the failure."""
    bad = [c for c in classes if ":" not in c or c.startswith(":") or c.endswith(":")]
    if bad:
        raise CliError(
            f"CLASS {bad[0]!r} must be module:QualName",
            hint="e.g. paglets doctor import ds_dia.compute.paglets:DsDiaBundleJobPaglet",
        )
    names = list(dict.fromkeys(classes))
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    urls = [session.entry]
    for item in host or ():
        url = session.host_url(item)
        if url not in urls:
            urls.append(url)
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(urls))) as pool:
        reports = list(pool.map(lambda u: diagnose_host(session, u, names), urls))
    first = reports[0]
    if first.error is not None and first.error_exit == EXIT_USAGE:
        # The entry does not answer, or refuses the key: the command could not run.
        if json_:
            print_json({"ok": False, "error": first.error})
        raise CliError(first.error["error"], hint=first.error_hint, code=EXIT_USAGE)
    if json_:
        print_json({"ok": all(r.ok for r in reports), "hosts": [r.to_wire() for r in reports]})
    else:
        for report in reports:
            _print_report(report)
    if not all(r.ok for r in reports):
        raise _summary(reports)
