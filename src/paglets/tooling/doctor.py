"""The checks of `paglets doctor` (cli.md §10; the seed's "Practical Checklist"), as pure
functions over what the CLI fetched from the mesh.

`paglets.cli.doctor` asks the hosts (the entry's `/mesh/members`, each host's `/health`,
`POST /diagnostics/import`, the `paglets jobs` views when they exist) and builds a
`Survey`; every `check_*` function here reads only that survey and returns one `Check`: a
status, one line saying what was found, and the fix to apply when something is wrong.
Keeping the fetching out makes every kind of fault a unit test on a hand-made survey.

Statuses: `PASS`, `WARN` (works, but a likely problem; never changes the exit code),
`FAIL` (the checklist item is not met: exit 1) and `SKIP` (cannot be checked here, with
the reason).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FAIL",
    "JOBS_MISSING",
    "PASS",
    "SKIP",
    "STATUSES",
    "WARN",
    "Check",
    "HostFacts",
    "JobsView",
    "Survey",
    "check_code",
    "check_collector",
    "check_groups",
    "check_hosts",
    "check_imports",
    "check_placement",
    "check_storage",
    "check_tags",
    "check_versions",
    "run_checks",
]

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
STATUSES = (PASS, WARN, FAIL, SKIP)
JOBS_MISSING = "jobs arrive with issue 8"
ROLE_TAGS = ("linux", "gpu", "collector", "laptop")
STALE_SLACK_S = 2.0  # clock skew allowed between a module's mtime and a host's start
LOW_DISK_FRACTION = 0.1  # warn when the disk cannot hold a tenth of the artifact quota


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: `STATUS name: detail`, then the notes and the fix."""

    name: str
    status: str
    detail: str
    fix: str | None = None
    notes: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()  # the hosts at fault, by name

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "notes": list(self.notes),
            "hosts": list(self.hosts),
        }


@dataclass(frozen=True, slots=True)
class HostFacts:
    """One mesh member as the doctor saw it: the entry's membership record plus, for
    members it asked, their own `/health` answer (or why that failed)."""

    name: str
    url: str
    status: str = "alive"  # the entry's view: alive|suspect|dead|left
    entry: bool = False
    code_version: str | None = None
    tags: tuple[str, ...] = ()
    incompatible_reason: str | None = None
    last_heard_age_s: float | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)  # flat, jobs.md's names
    health: Mapping[str, Any] | None = None
    health_error: str | None = None
    health_hint: str | None = None

    @property
    def running(self) -> bool:
        """Listed as running by the entry (suspect included: it may still answer)."""
        return self.status in ("alive", "suspect")

    @property
    def label(self) -> str:
        return f"{self.name} (entry)" if self.entry else self.name

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "status": self.status,
            "entry": self.entry,
            "code_version": self.code_version,
            "tags": list(self.tags),
            "incompatible_reason": self.incompatible_reason,
            "answered": self.health is not None,
            "error": self.health_error,
            "artifacts": dict((self.health or {}).get("artifacts") or {}) or None,
        }


@dataclass(frozen=True, slots=True)
class JobsView:
    """What one `paglets jobs` view answered: its exit code (0 found, 1 nothing found or
    negative, 2 could not run), its JSON document, and its error line."""

    code: int
    doc: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Survey:
    """Everything the checks read. `imports` holds one `HostReport.to_wire()` dict per host
    asked (with `answered_at`, the client's clock when the answer came); `jobs` is None when
    this paglets has no jobs system."""

    entry_url: str
    hosts: tuple[HostFacts, ...]
    mesh: bool = True  # False: the entry runs with --no-mesh
    classes: tuple[str, ...] = ()
    imports: tuple[Mapping[str, Any], ...] = ()
    expect_tags: tuple[str, ...] = ()
    jobs: Mapping[str, JobsView] | None = None
    needs: tuple[str, ...] = ()  # the placement options as typed, for the fix lines
    group: str | None = None
    return_home: bool = False
    result_size: int | None = None

    @property
    def entry(self) -> HostFacts:
        return next((h for h in self.hosts if h.entry), self.hosts[0])


# -- helpers --------------------------------------------------------------------------------


def _names(hosts: Iterable[HostFacts]) -> str:
    return ", ".join(h.label for h in hosts) or "none"


def _size(n: Any) -> str:
    from paglets.cli.output import format_size

    return format_size(n)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _start_command(host: HostFacts, survey: Survey) -> str:
    """The `paglets host` line that brings `host` back into the entry's mesh."""
    version = survey.entry.code_version or "VERSION"
    name = "NAME" if "://" in host.name else host.name
    port = urlsplit(host.url).port
    where = f" --port {port}" if port else ""
    peer = "" if host.entry else f" --peer {survey.entry_url}"
    return f"paglets host --name {name}{where} --mesh-version {version}{peer}"


# -- 1. hosts running -----------------------------------------------------------------------


def check_hosts(survey: Survey) -> Check:
    """The entry answered; every member is alive and answers `/health` from here."""
    dead = [h for h in survey.hosts if h.status == "dead"]
    left = [h for h in survey.hosts if h.status == "left"]
    suspect = [h for h in survey.hosts if h.status == "suspect" and h.health is None]
    silent = [h for h in survey.hosts if h.status == "alive" and h.health_error is not None]
    absent = [h for h in survey.hosts if h.status == "absent"]
    up = [h for h in survey.hosts if h.running and h.health is not None]
    notes: list[str] = []
    fixes: list[str] = []
    for h in dead:
        heard = _age(h.last_heard_age_s)
        notes.append(f"{h.name} ({h.url}) is dead" + (f", last heard {heard}" if heard else ""))
        fixes.append(f"start {h.name} again: {_start_command(h, survey)}")
    for h in silent:
        notes.append(
            f"{h.name} is alive in the mesh but {h.url} does not answer from here: {h.health_error}"
        )
        fixes.append(
            h.health_hint
            or f"make {h.url} reachable from this machine (--bind-public, firewall), "
            f"or run the doctor from a machine that can reach it"
        )
    for h in absent:
        if h.health is None:
            notes.append(f"{h.url} is no member of the mesh and does not answer: {h.health_error}")
            fixes.append(f"start a host at {h.url}: {_start_command(h, survey)}")
        else:
            notes.append(
                f"{h.name} ({h.url}) answers but is no member of {survey.entry.name}'s mesh"
            )
            fixes.append(f"restart {h.name} with --peer {survey.entry_url}")
    for h in suspect:
        notes.append(f"{h.name} ({h.url}) is suspected down: {h.health_error or 'no answer'}")
    for h in left:
        notes.append(f"{h.name} ({h.url}) left the mesh (stopped)")
    where = "" if survey.mesh else " (the entry runs with --no-mesh: only it is checked)"
    if dead or silent or absent:
        at_fault = [*dead, *silent, *absent]
        return Check(
            "hosts",
            FAIL,
            f"{len(at_fault)} of {len(survey.hosts)} host(s) not running or not reachable: "
            f"{', '.join(h.name for h in at_fault)}",
            fix="; ".join(fixes),
            notes=tuple(notes),
            hosts=tuple(h.name for h in at_fault),
        )
    detail = f"{len(up)} host(s) alive and answering: {_names(up)}{where}"
    if suspect or left:
        return Check(
            "hosts",
            WARN,
            detail,
            fix="; ".join(
                [f"start {h.name} again if it should run jobs" for h in left]
                + [f"check {h.name}: it stopped answering probes" for h in suspect]
            ),
            notes=tuple(notes),
            hosts=tuple(h.name for h in (*suspect, *left)),
        )
    return Check("hosts", PASS, detail)


# -- 2. same mesh version -------------------------------------------------------------------


def check_versions(survey: Survey) -> Check:
    """Every running member runs the entry's `--mesh-version` (and protocol and scheme)."""
    entry = survey.entry
    version = entry.code_version
    running = [h for h in survey.hosts if h.running and not h.entry]
    odd = [
        h
        for h in running
        if h.incompatible_reason is not None
        or (h.code_version is not None and version is not None and h.code_version != version)
    ]
    if not odd:
        who = f"{len(running) + 1} host(s) run" if running else "the entry runs"
        return Check("mesh-version", PASS, f"{who} mesh version {version!r}")
    notes = []
    for h in odd:
        if h.code_version != version:
            notes.append(
                f"{h.name} runs mesh version {h.code_version!r}, {entry.label} runs {version!r}"
            )
        else:
            notes.append(f"{h.name} is incompatible: {h.incompatible_reason}")
    return Check(
        "mesh-version",
        FAIL,
        "; ".join(notes),
        fix=(
            f"restart {', '.join(h.name for h in odd)} with --mesh-version {version} "
            "(or every host with one common value), once all run the same code"
        ),
        hosts=tuple(h.name for h in odd),
    )


# -- 3. classes importable everywhere --------------------------------------------------------


def _import_fix(host: str, url: str, name: str, error: str) -> str:
    """The seed's "Diagnosing Import Failures" steps, filled in."""
    module, _, qualname = name.partition(":")
    top = qualname.split(".")[0]
    return (
        f"on {host} ({url}): 1. the class path is {name}; "
        f'2. run there: uv run python -c "from {module} import {top}; print({top})" '
        f"(it fails with {error.split(': ')[-1] if error else 'an ImportError'}); "
        "3. check that the state dataclass imports too; "
        "4. install the same checkout, wheel or package version as on the other hosts; "
        "5. restart the host after installing new code; "
        "6. keep the class top-level in an importable module, not nested in a function "
        "or in __main__"
    )


def check_imports(survey: Survey) -> Check:
    """Each `--class` and its state class import on every host asked."""
    if not survey.classes:
        return Check(
            "imports",
            SKIP,
            "no --class given",
            notes=("pass --class module:QualName for each paglet class you will run",),
        )
    notes: list[str] = []
    fixes: list[str] = []
    bad: list[str] = []
    good: list[str] = []
    checked: list[str] = []
    for report in survey.imports:
        who = str(report.get("host") or report.get("url"))
        if report.get("error"):
            error = report["error"]
            bad.append(who)
            notes.append(f"{who} could not be asked: {error.get('error')}")
            continue
        failed = [r for r in report.get("results") or () if not r.get("ok") or r.get("error")]
        if not failed:
            good.append(who)
            checked = [str(r.get("name")) for r in report.get("results") or ()]
            continue
        bad.append(who)
        for result in failed:
            name = str(result.get("name"))
            error = f"{result.get('error_type') or 'error'}: {result.get('error')}"
            notes.append(f"{who} cannot import {name}: {error}")
        first = failed[0]
        fixes.append(
            _import_fix(who, str(report.get("url")), str(first.get("name")), first.get("error"))
        )
    if bad:
        return Check(
            "imports",
            FAIL,
            f"{len(bad)} of {len(survey.imports)} host(s) cannot import the classes: "
            f"{', '.join(bad)}",
            fix=" | ".join(fixes) or None,
            notes=tuple(notes),
            hosts=tuple(bad),
        )
    if not survey.imports:
        return Check("imports", SKIP, "no running host to ask")
    return Check(
        "imports",
        PASS,
        f"{', '.join(good)} import {', '.join(checked or survey.classes)}",
    )


def check_code(survey: Survey, *, now: float | None = None) -> Check:
    """The same distribution version everywhere, and no module changed after its host
    started (cli.md §10 checks 5 and 6). Warnings only: a path or version can differ for
    good reasons."""
    if not survey.classes:
        return Check("code", SKIP, "no --class given")
    versions: dict[str, dict[str, list[str]]] = {}
    stale: list[str] = []
    stale_hosts: list[str] = []
    for report in survey.imports:
        who = str(report.get("host") or report.get("url"))
        answered = report.get("answered_at") or now or time.time()
        age = report.get("started_at_age_s")
        started = answered - age if isinstance(age, int | float) else None
        for result in report.get("results") or ():
            if not result.get("ok"):
                continue
            name = str(result.get("name"))
            dist = result.get("distribution")
            if dist:
                label = f"{dist} {result.get('version') or '?'}"
                versions.setdefault(name, {}).setdefault(label, []).append(who)
            mtime = result.get("module_mtime")
            if (
                isinstance(mtime, int | float)
                and started is not None
                and mtime > started + STALE_SLACK_S
            ):
                stale.append(f"{who}: {result.get('module_file')} changed after the host started")
                if who not in stale_hosts:
                    stale_hosts.append(who)
    differ = {n: v for n, v in versions.items() if len(v) > 1}
    notes = [
        f"{name} comes from "
        + "; ".join(f"{label} on {', '.join(hosts)}" for label, hosts in found.items())
        for name, found in differ.items()
    ]
    notes += stale
    if not notes:
        return Check("code", PASS, "same code versions; no module changed after its host started")
    fixes = []
    if differ:
        fixes.append("install the same package version on every host")
    if stale_hosts:
        fixes.append(f"restart {', '.join(stale_hosts)} so the new code is loaded")
    return Check(
        "code",
        WARN,
        "hosts may run different code",
        fix="; ".join(fixes),
        notes=tuple(notes),
        hosts=tuple(
            dict.fromkeys(
                [h for v in differ.values() for hs in v.values() for h in hs] + stale_hosts
            )
        ),
    )


# -- 4. tags ----------------------------------------------------------------------------------


def check_tags(survey: Survey) -> Check:
    """`--expect-tag` tags are advertised by some running host; any tag at all otherwise."""
    running = [h for h in survey.hosts if h.running]
    by_tag: dict[str, list[str]] = {}
    for h in running:
        for tag in h.tags:
            by_tag.setdefault(tag, []).append(h.name)
    shown = "; ".join(f"{t} ({', '.join(hs)})" for t, hs in sorted(by_tag.items()))
    missing = [t for t in survey.expect_tags if t not in by_tag]
    if missing:
        return Check(
            "tags",
            FAIL,
            f"no running host advertises {', '.join(repr(t) for t in missing)}"
            + (f" (advertised: {shown})" if shown else " (no host advertises any tag)"),
            fix=(
                f"add {' '.join(f'--tag {t}' for t in missing)} to the paglets host command "
                "of the hosts with that role, and restart them"
            ),
        )
    if not by_tag:
        return Check(
            "tags",
            WARN,
            "no host advertises a tag",
            fix=f"advertise roles with --tag ({', '.join(ROLE_TAGS)}) and restart the hosts",
        )
    return Check("tags", PASS, shown)


# -- 5, 6. placement and groups (the jobs system) ----------------------------------------------


def _rows(doc: Any, *keys: str) -> list[Any]:
    """The list under the first of `keys` (one group's document counts as a list of one)."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, Mapping) and "group_id" in doc:
        return [doc]
    if isinstance(doc, Mapping):
        for key in keys:
            value = doc.get(key)
            if isinstance(value, list):
                return value
    return []


def _host_of(row: Any) -> str:
    if not isinstance(row, Mapping):
        return str(row)
    return str(row.get("host_name") or row.get("host") or row.get("name") or "?")


def _reason(row: Any) -> str:
    """One rejected host of `jobs hosts --json`: `{host, reasons: [{code, message}]}`."""
    if not isinstance(row, Mapping):
        return str(row)
    why = row.get("reasons") or row.get("reason") or "rejected"
    if isinstance(why, list):
        why = "; ".join(
            str(w.get("message") or w) if isinstance(w, Mapping) else str(w) for w in why
        )
    return f"{_host_of(row)}: {why}"


# Rejections that end by themselves (jobs.md §3.5: such hosts stay candidates).
WAITING_CODES = frozenset({"no-summary", "stale", "offline", "draining"})


def _only_waiting(rows: list[Any]) -> bool:
    """Some rejected host fails only on reasons that end by themselves."""
    for row in rows:
        reasons = row.get("reasons") if isinstance(row, Mapping) else None
        if not isinstance(reasons, list) or not reasons:
            continue
        codes = {r.get("code") for r in reasons if isinstance(r, Mapping)}
        if codes and codes <= WAITING_CODES:
            return True
    return False


def check_placement(survey: Survey) -> Check:
    """`paglets jobs hosts` with the given needs finds a candidate."""
    if survey.jobs is None:
        return Check("placement", SKIP, JOBS_MISSING)
    view = survey.jobs.get("hosts")
    if view is None:
        return Check("placement", SKIP, "this paglets has no `jobs hosts` view")
    needs = " ".join(survey.needs) or "no particular needs"
    command = " ".join(["paglets jobs hosts", *survey.needs])
    if view.code == 2:
        return Check(
            "placement",
            FAIL,
            f"`{command}` could not run: {view.error}",
            fix=f"run `{command}` for the details",
        )
    candidates = _rows(view.doc, "candidates")
    rejected = [_reason(r) for r in _rows(view.doc, "rejected", "rejections")]
    if view.code != 0 and _only_waiting(_rows(view.doc, "rejected", "rejections")):
        return Check(
            "placement",
            WARN,
            f"no candidate host for {needs} yet: a host has not sent its resource summary "
            "(just started or rejoining) or is offline or draining",
            fix=f"wait a few seconds and run `{command}` (or `paglets doctor`) again",
            notes=tuple(rejected),
        )
    if view.code != 0:  # cli.md section 4: `jobs hosts` exits 1 when no host fits
        return Check(
            "placement",
            FAIL,
            f"no candidate host for {needs}",
            fix="lower the needs, or start or free a host that fits (each rejection above)",
            notes=tuple(rejected),
        )
    names = [_host_of(c) for c in candidates]
    found = f"{len(names)} candidate host(s)" if names else "candidate hosts"
    return Check(
        "placement",
        PASS,
        f"{found} for {needs}" + (f": {', '.join(names)}" if names else ""),
        notes=tuple(rejected),
    )


def check_groups(survey: Survey) -> Check:
    """`paglets jobs groups` answers; with `--group`, that group is found."""
    if survey.jobs is None:
        return Check("groups", SKIP, JOBS_MISSING)
    view = survey.jobs.get("groups")
    if view is None:
        return Check("groups", SKIP, "this paglets has no `jobs groups` view")
    command = "paglets jobs groups" + (f" --group {survey.group}" if survey.group else "")
    if view.code == 2:
        return Check(
            "groups", FAIL, f"`{command}` could not run: {view.error}", fix=f"run `{command}`"
        )
    groups = _rows(view.doc, "groups")
    if survey.group is None:
        silent = view.doc.get("errors") if isinstance(view.doc, Mapping) else None
        return Check(
            "groups",
            PASS,
            f"the groups view answers ({len(groups)} group(s))",
            notes=tuple(
                f"no answer from {e.get('host')}: {e.get('error')}"
                for e in silent or ()
                if isinstance(e, Mapping)
            ),
        )
    found = next(
        (g for g in groups if isinstance(g, Mapping) and g.get("group_id") == survey.group),
        groups[0] if len(groups) == 1 else None,
    )
    if view.code != 0 or not isinstance(found, Mapping):
        return Check(
            "groups",
            FAIL,
            f"group {survey.group!r} is not visible from the mesh"
            + (f": {view.error}" if view.error else ""),
            fix="check the group id (paglets jobs groups lists them), and that the host of "
            "its collector is alive",
        )
    status = found.get("status") or "?"
    collector = found.get("collector_host_name") or found.get("collector_host") or "?"
    home = found.get("home_host_name") or found.get("home") or "?"
    return Check(
        "groups",
        PASS,
        f"group {survey.group}: {status}, collector on {collector}, home {home}",
    )


# -- 7. a plan for large results ---------------------------------------------------------------


def check_storage(survey: Survey) -> Check:
    """Each running host's artifact quota against its free disk; with `--result-size`,
    some host can store that much."""
    running = [h for h in survey.hosts if h.running and h.health is not None]
    rows: list[str] = []
    low: list[str] = []
    unknown: list[str] = []
    room: dict[str, float] = {}
    for h in running:
        art = (h.health or {}).get("artifacts") or {}
        quota = art.get("quota_bytes")
        free = art.get("disk_free_bytes", h.resources.get("free_temp_bytes"))
        if quota is None and free is None and "quota_bytes" not in art:
            unknown.append(h.name)
            continue
        limit = float("inf") if quota is None else float(quota)
        disk = float("inf") if free is None else float(free)
        room[h.name] = min(limit, disk, float(art.get("max_artifact_bytes") or float("inf")))
        rows.append(
            f"{h.name} quota {_size(quota)}, "
            + (f"{_size(free)} free on disk" if free is not None else "free disk unknown")
        )
        if free is not None and quota is not None and free < LOW_DISK_FRACTION * quota:
            low.append(h.name)
    if not running:
        return Check("storage", SKIP, "no running host answered")
    notes = tuple(rows + ([f"no storage figures from {', '.join(unknown)}"] if unknown else []))
    if survey.result_size is not None:
        fits = [name for name, r in room.items() if r >= survey.result_size]
        if not fits:
            return Check(
                "storage",
                FAIL,
                f"no host can store a result of {_size(survey.result_size)}",
                fix=(
                    "raise --artifact-storage-quota / --artifact-max-size on an always-on "
                    "collector host, free disk there, or keep results on the compute hosts "
                    "(artifact policy keep) and fetch them with paglets jobs results"
                ),
                notes=notes,
                hosts=tuple(room),
            )
    if low:
        return Check(
            "storage",
            WARN,
            f"little free disk for the artifact quota on {', '.join(low)}",
            fix="free disk there, or lower --artifact-storage-quota to what the disk holds",
            notes=notes,
            hosts=tuple(low),
        )
    detail = "artifact room known for " + (", ".join(room) or "no host")
    if survey.result_size is not None:
        fits = [name for name, r in room.items() if r >= survey.result_size]
        detail = f"{', '.join(fits)} can store a result of {_size(survey.result_size)}"
    return Check("storage", PASS, detail, notes=notes)


def check_collector(survey: Survey) -> Check:
    """A group's collector on a host tagged `laptop` without return home (jobs.md §4.5):
    results wait in the jobs' outboxes while the laptop sleeps."""
    if survey.jobs is None:
        return Check("collector", SKIP, JOBS_MISSING)
    running = [h for h in survey.hosts if h.running]
    by_name = {h.name: h for h in survey.hosts}
    view = survey.jobs.get("groups")
    if survey.group and view is not None and view.code == 0:
        for group in _rows(view.doc, "groups"):
            if not isinstance(group, Mapping) or group.get("group_id", survey.group) != (
                survey.group
            ):
                continue
            where = str(group.get("collector_host_name") or group.get("collector_host") or "")
            host = by_name.get(where)
            returns = bool(group.get("return_home_when_complete") or group.get("return_home"))
            if host is not None and "laptop" in host.tags and not returns:
                return _laptop_warning(host, f"group {survey.group}'s collector")
            return Check("collector", PASS, f"group {survey.group}'s collector on {where or '?'}")
    collectors = [h for h in running if "collector" in h.tags]
    if collectors:
        laptops = [h for h in collectors if "laptop" in h.tags]
        if laptops and not survey.return_home:
            return _laptop_warning(laptops[0], "a host tagged collector")
        return Check("collector", PASS, f"collectors go to {_names(collectors)}")
    entry = survey.entry
    if "laptop" in entry.tags and not survey.return_home:
        return _laptop_warning(entry, "with no host tagged collector, the collector")
    return Check(
        "collector",
        PASS,
        f"no host tagged collector: collectors stay on the submitting host ({entry.name})",
    )


def _laptop_warning(host: HostFacts, what: str) -> Check:
    return Check(
        "collector",
        WARN,
        f"{what} would run on {host.name}, tagged laptop, without return home",
        fix=(
            "tag an always-on host --tag collector, or submit with "
            "return_home_when_complete=True (paglets jobs submit --return-home)"
        ),
        hosts=(host.name,),
    )


# -- all of them ------------------------------------------------------------------------------


def run_checks(survey: Survey, *, now: float | None = None) -> list[Check]:
    """Every check in the checklist's order."""
    return [
        check_hosts(survey),
        check_versions(survey),
        check_imports(survey),
        check_code(survey, now=now),
        check_tags(survey),
        check_placement(survey),
        check_groups(survey),
        check_storage(survey),
        check_collector(survey),
    ]


def worst(checks: Sequence[Check]) -> str:
    """FAIL if any failed, else WARN if any warned, else PASS."""
    statuses = {c.status for c in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS
