"""`paglets doctor` (cli.md section 10): the seed's "Practical Checklist" as checks over
the whole mesh, and `paglets doctor import CLASS...` (check 4 alone).

`paglets doctor [CLASS...] [--class CLASS]...` reads the entry's membership view, asks
every running member for `/health` (and, with classes, `POST /diagnostics/import`), asks
the `paglets jobs` views when this paglets has them, and prints one line per check
(`PASS|WARN|FAIL|SKIP name: detail`, then `fix: ...`). The checks themselves are pure
functions in `paglets.tooling.doctor`. Exit 1 when a check failed, 2 when the entry host
cannot be asked.

`paglets doctor import` asks the entry host and every `--host`, in parallel, to import
each class through the same gate as a class name arriving from the network
(`POST /diagnostics/import`, network.md 1.8), and prints per host what the seed's manual
check prints: the class, or the exact failure with the host's code version and `sys.path`
head. A paglet class's state class is checked too. Exit 1 when any host failed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

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
from paglets.cli.values import option, parse_size
from paglets.core.errors import PagletError
from paglets.tooling.doctor import (
    FAIL,
    WARN,
    Check,
    HostFacts,
    JobsView,
    Survey,
    run_checks,
    worst,
)

__all__ = ["DoctorGroup", "HostReport", "app", "diagnose_host"]

MAX_THREADS = 16
PATH_HEAD = 4  # sys.path entries shown for a failing host


class DoctorGroup(TyperGroup):
    """`paglets doctor CLASS...` next to `paglets doctor import CLASS...`: a positional
    word that is not a subcommand is a class, passed on as `--class CLASS` (a CLASS always
    contains `:`, so `import` is never taken for one)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return ["[OPTIONS] [CLASS]...", "|", "import CLASS..."]

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        takes_value = {
            opt
            for param in self.params
            if param.param_type_name == "option"
            and not getattr(param, "is_flag", False)
            and not getattr(param, "count", False)
            for opt in param.opts
        }
        out: list[str] = []
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":  # only classes follow
                out += [item for name in args[i + 1 :] for item in ("--class", name)]
                break
            if token.startswith("-"):
                out.append(token)
                if token in takes_value and i + 1 < len(args):
                    out.append(args[i + 1])
                    i += 1
            elif token in self.commands:
                out += args[i:]  # the rest belongs to the subcommand
                break
            else:
                out += ["--class", token]
            i += 1
        return super().parse_args(ctx, out)


app = typer.Typer(
    cls=DoctorGroup,
    name="doctor",
    help="Check that the hosts of a mesh can run your paglets: the seed's checklist.",
    no_args_is_help=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["--help", "-h"]},
)


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


def diagnose_host(
    session: Session, url: str, names: list[str], name: str | None = None
) -> HostReport:
    """Ask one host to import `names` (and the state classes of the paglet classes).
    `name`: the host's name when known (else `/health` is asked for it)."""
    report = HostReport(url, name)
    try:
        if name is None:
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


# -- the checklist: `paglets doctor` ----------------------------------------------------------

JOBS_MODULE = "paglets.cli.jobs"

ClassOption = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        metavar="module:QualName",
        help="A paglet class every host must import, with its state class (repeatable).",
    ),
]
StateClassOption = Annotated[
    list[str] | None,
    typer.Option(
        "--state-class", metavar="module:QualName", help="An extra state class (repeatable)."
    ),
]


def _check_names(names: list[str], what: str) -> None:
    bad = [c for c in names if ":" not in c or c.startswith(":") or c.endswith(":")]
    if bad:
        raise CliError(
            f"{what} {bad[0]!r} must be module:QualName",
            hint="e.g. paglets doctor ds_dia.compute.paglets:DsDiaBundleJobPaglet "
            '(the one subcommand is "paglets doctor import")',
        )


def _members(session: Session, health: dict[str, Any]) -> tuple[list[HostFacts], bool]:
    """The entry's membership view as `HostFacts` (the entry first), and whether the mesh
    is on."""
    from paglets.cli.mesh_summary import member_resources

    try:
        answer = session.client.get_json(f"{session.entry}/mesh/members")
    except PagletError as exc:
        if exc.code != "mesh-disabled":
            raise session.fail(exc) from exc
        return [
            HostFacts(
                name=str(health.get("name") or session.entry),
                url=session.entry,
                entry=True,
                code_version=health.get("code_version"),
                tags=tuple(health.get("tags") or ()),
                health=health,
            )
        ], False
    facts = []
    for m in (answer or {}).get("members") or ():
        if not isinstance(m, dict):
            continue
        entry = bool(m.get("self"))
        facts.append(
            HostFacts(
                name=str(m.get("name")),
                url=session.entry if entry else str(m.get("url") or "").rstrip("/"),
                status=str(m.get("liveness") or m.get("status") or "alive"),
                entry=entry,
                code_version=m.get("code_version"),
                tags=tuple(m.get("tags") or ()),
                incompatible_reason=m.get("incompatible_reason"),
                last_heard_age_s=m.get("last_heard_age_s"),
                resources=member_resources(m),
                health=health if entry else None,
            )
        )
    facts.sort(key=lambda h: (not h.entry, h.name))
    if not facts or not facts[0].entry:
        raise CliError(f"{session.entry}/mesh/members did not list the entry host itself")
    return facts, True


def _limit(session: Session, facts: list[HostFacts], wanted: list[str]) -> list[HostFacts]:
    """`--host`: the entry (whose view the checks read) and the hosts named; a URL that is
    no member is listed as `absent`."""
    if not wanted:
        return facts
    by_name = {h.name: h for h in facts}
    by_url = {h.url: h for h in facts}
    keep = [facts[0]]
    for item in wanted:
        found = by_name.get(item) if "://" not in item else by_url.get(item.rstrip("/"))
        if found is None and "://" not in item:
            session.host_url(item)  # the usual "no host named ..." error, exit 2
        if found is None:
            found = HostFacts(name=item.rstrip("/"), url=item.rstrip("/"), status="absent")
        if found not in keep:
            keep.append(found)
    return keep


def _ask_host(
    session: Session, host: HostFacts, names: list[str]
) -> tuple[HostFacts, dict[str, Any] | None]:
    """One member's `/health` (unless it is the entry) and, with `names`, its imports."""
    if not host.running and host.status != "absent":
        return host, None
    if host.health is None:
        try:
            health = session.client.health(host.url)
        except PagletError as exc:
            message, hint, _ = describe_error(exc, session.entry)
            return dataclasses.replace(host, health_error=message, health_hint=hint), None
        host = dataclasses.replace(host, health=health)
        if host.status == "absent":
            host = dataclasses.replace(host, name=str(health.get("name") or host.name))
    if not names:
        return host, None
    report = diagnose_host(session, host.url, names, host.name).to_wire()
    report["answered_at"] = time.time()
    return host, report


def _jobs_argv(argv: list[str], session: Session, api_key_env: str | None) -> list[str]:
    out = ["jobs", *argv, "--json", "--entry", session.entry, "--timeout", str(session.timeout)]
    if api_key_env:
        out += ["--api-key-env", api_key_env]
    return out


def _run_jobs_view(argv: list[str]) -> JobsView:
    """One `paglets jobs ...` view, run in this process with its output captured: the
    command line is the jobs system's contract (cli.md section 4), whatever its modules."""
    import contextlib
    import io
    import json

    from paglets.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = run(argv)
        except SystemExit as exc:  # a command that exits on its own
            code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
    try:
        doc = json.loads(out.getvalue()) if out.getvalue().strip() else None
    except ValueError:
        doc = None
    lines = err.getvalue().strip().splitlines()
    error = lines[0].split(": ", 1)[-1] if lines else None
    if isinstance(doc, dict) and doc.get("ok") is False and isinstance(doc.get("error"), dict):
        error = error or str(doc["error"].get("error"))
    return JobsView(code, doc, error)


def _jobs_views(
    session: Session, api_key_env: str | None, needs: list[str], group: str | None
) -> dict[str, JobsView] | None:
    """`jobs hosts` and `jobs groups`, or None when this paglets has no jobs commands."""
    import importlib
    import importlib.util

    try:
        if importlib.util.find_spec(JOBS_MODULE) is None:
            return None
        jobs_app = getattr(importlib.import_module(JOBS_MODULE), "app", None)
    except ImportError:
        return None
    if not isinstance(jobs_app, typer.Typer):
        return None
    command = typer.main.get_command(jobs_app)
    known = set(getattr(command, "commands", {}))
    views: dict[str, JobsView] = {}
    if "hosts" in known:
        views["hosts"] = _run_jobs_view(_jobs_argv(["hosts", *needs], session, api_key_env))
    if "groups" in known:
        extra = ["--group", group] if group else []
        views["groups"] = _run_jobs_view(_jobs_argv(["groups", *extra], session, api_key_env))
    return views


def _needs(
    cores: int | None,
    mem: str | None,
    temp: str | None,
    gpu: bool,
    gpu_memory: str | None,
    tags: list[str],
    prefer: list[str],
    exclude_tags: list[str],
    exclude_hosts: list[str],
    where: list[str],
    allow_home: bool,
) -> list[str]:
    """The placement options as `paglets jobs hosts` takes them."""
    out: list[str] = []
    for flag, value in (("--cores", cores), ("--mem", mem), ("--temp", temp)):
        if value is not None:
            out += [flag, str(value)]
    if gpu:
        out.append("--gpu")
    if gpu_memory is not None:
        out += ["--gpu-memory", gpu_memory]
    for flag, values in (
        ("--tag", tags),
        ("--prefer-tag", prefer),
        ("--exclude-tag", exclude_tags),
        ("--exclude-host", exclude_hosts),
        ("--where", where),
    ):
        for value in values:
            out += [flag, value]
    if allow_home:
        out.append("--allow-home")
    return out


def _print_checks(checks: list[Check]) -> None:
    out = sys.stdout
    for check in checks:
        out.write(f"{check.status} {check.name}: {check.detail}\n")
        for note in check.notes:
            out.write(f"  - {note}\n")
        if check.fix and check.status in (FAIL, WARN):
            out.write(f"  fix: {check.fix}\n")
    out.flush()


@app.callback(invoke_without_command=True)
def doctor(
    ctx: typer.Context,
    classes: ClassOption = None,
    state_classes: StateClassOption = None,
    expect_tag: Annotated[
        list[str] | None,
        typer.Option("--expect-tag", metavar="T", help="A tag some host must advertise."),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", metavar="NAME|URL", help="Check only these hosts (repeatable)."),
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", metavar="ID", help="Check that this group is visible.")
    ] = None,
    result_size: Annotated[
        int | None,
        typer.Option(
            "--result-size",
            metavar="SIZE",
            parser=option(parse_size),
            help="Expected result bytes: some host must have that much artifact room.",
        ),
    ] = None,
    return_home: Annotated[
        bool,
        typer.Option("--return-home", help="Your groups return home: no laptop warning."),
    ] = False,
    cores: Annotated[
        int | None, typer.Option("--cores", metavar="N", help="Placement: cores a job needs.")
    ] = None,
    mem: Annotated[
        str | None, typer.Option("--mem", metavar="SIZE", help="Placement: memory a job needs.")
    ] = None,
    temp: Annotated[
        str | None,
        typer.Option("--temp", "--disk", metavar="SIZE", help="Placement: work disk it needs."),
    ] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="Placement: a job needs a GPU.")] = False,
    gpu_memory: Annotated[
        str | None,
        typer.Option("--gpu-memory", metavar="SIZE", help="Placement: GPU memory it needs."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="T", help="Placement: a tag the host must have."),
    ] = None,
    prefer_tag: Annotated[
        list[str] | None, typer.Option("--prefer-tag", metavar="T", help="Placement: prefer.")
    ] = None,
    exclude_tag: Annotated[
        list[str] | None, typer.Option("--exclude-tag", metavar="T", help="Placement: avoid.")
    ] = None,
    exclude_host: Annotated[
        list[str] | None,
        typer.Option("--exclude-host", metavar="NAME|URL", help="Placement: never this host."),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", metavar="KEY>=V", help="Placement: a property constraint."),
    ] = None,
    allow_home: Annotated[
        bool, typer.Option("--allow-home", help="Placement: the entry may run the job.")
    ] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 20.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """The seed's Practical Checklist over the whole mesh: hosts running, one mesh
    version, classes importable everywhere, tags, placement, groups, storage. One line per
    check, with the fix; exit 1 if a check failed."""
    if ctx.invoked_subcommand is not None:
        return
    names = list(dict.fromkeys(classes or ()))
    extra_states = list(dict.fromkeys(state_classes or ()))
    _check_names(names, "CLASS")
    _check_names(extra_states, "--state-class")
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    health = session.call(lambda: session.client.health(session.entry))
    facts, mesh = _members(session, health)
    facts = _limit(session, facts, list(host or ()))
    asked = list(dict.fromkeys(names + extra_states))
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(facts))) as pool:
        answers = list(pool.map(lambda h: _ask_host(session, h, asked), facts))
    needs = _needs(
        cores,
        mem,
        temp,
        gpu,
        gpu_memory,
        list(tag or ()),
        list(prefer_tag or ()),
        list(exclude_tag or ()),
        list(exclude_host or ()),
        list(where or ()),
        allow_home,
    )
    survey = Survey(
        entry_url=session.entry,
        hosts=tuple(h for h, _ in answers),
        mesh=mesh,
        classes=tuple(asked),
        imports=tuple(r for _, r in answers if r is not None),
        expect_tags=tuple(dict.fromkeys(expect_tag or ())),
        jobs=_jobs_views(session, api_key_env, needs, group),
        needs=tuple(needs),
        group=group,
        return_home=return_home,
        result_size=result_size,
    )
    checks = run_checks(survey)
    failed = [c for c in checks if c.status == FAIL]
    if json_:
        print_json(
            {
                "ok": not failed,
                "status": worst(checks),
                "entry": session.entry,
                "checks": [c.to_wire() for c in checks],
                "hosts": [h.to_wire() for h in survey.hosts],
                "imports": list(survey.imports),
            }
        )
    else:
        _print_checks(checks)
    if failed:
        raise CliError(
            f"{len(failed)} of {len(checks)} checks failed: " + ", ".join(c.name for c in failed),
            hint="apply the fix lines above, then run paglets doctor again" if not json_ else None,
            code=EXIT_FAILED,
        )
