"""`paglets mesh summary` (cli.md §3): every member's resources from the entry host's
gossip table, one row each. No other host is asked (jobs.md §1.4: no fan-out).

`gossip_members(session)` is that table (`GET /mesh/members`, the entry first) and
`member_resources(member)` flattens one entry into jobs.md's field names; `paglets mesh
hosts`, `targets` and `paglets jobs status` read the same values.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from paglets.cli.errors import EXIT_FAILED
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Session,
    Timeout,
    open_session,
    print_json,
    table,
)
from paglets.cli.values import option, parse_duration, parse_int

__all__ = ["DEFAULT_MAX_AGE", "MaxAge", "gossip_members", "member_resources", "summary"]

DEFAULT_MAX_AGE = 20.0  # cli.md §3: --max-age 0 means 20 s

MaxAge = Annotated[
    float,
    typer.Option(
        "--max-age",
        metavar="DURATION",
        parser=option(parse_duration),
        help="Leave out hosts whose load is older (0 = 20s).",
    ),
]


def gossip_members(session: Session) -> list[dict[str, Any]]:
    """The entry's membership view (`GET /mesh/members`): the entry first, then by name."""
    answer = session.call(lambda: session.client.get_json(f"{session.entry}/mesh/members"))
    members = [m for m in (answer or {}).get("members") or () if isinstance(m, dict)]
    members.sort(key=lambda m: (not m.get("self"), str(m.get("name"))))
    return members


def member_resources(member: dict[str, Any]) -> dict[str, Any]:
    """One member's spec and load, flat, with jobs.md's names (empty when unknown)."""
    resources = member.get("resources") or {}
    spec = resources.get("spec") or {}
    load = resources.get("load") or {}
    out: dict[str, Any] = {}
    for key in ("logical_cpus", "memory_total_bytes", "temp_total_bytes", "platform", "arch"):
        if key in spec:
            out[key] = spec[key]
    if spec:
        out["job_cores"] = len(spec.get("job_cpu_ids") or ())
        out["gpus"] = list(spec.get("gpus") or ())
    out.update(load)
    if resources.get("load_age_s") is not None:
        out["load_age_s"] = resources["load_age_s"]
    return out


def _status(member: dict[str, Any]) -> str:
    if member.get("incompatible_reason"):
        return "incompatible"
    return str(member.get("status") or "-")


def _age(member: dict[str, Any]) -> float | None:
    if member.get("self"):
        return 0.0
    age = (member.get("resources") or {}).get("load_age_s")
    return float(age) if isinstance(age, int | float) else None


def _size(value: Any) -> str:
    from paglets.cli.output import format_size

    return format_size(value) if isinstance(value, int | float) else "-"


def _seconds(age: float | None) -> str:
    if age is None:
        return "-"
    return f"{age:.0f}s" if age < 60 else f"{age / 60:.0f}m"


def _cores(r: dict[str, Any]) -> str:
    if "free_cpu_cores" not in r:
        return "-"
    total = r.get("job_cores", r.get("logical_cpus"))
    return f"{r['free_cpu_cores']}/{total}" if total is not None else str(r["free_cpu_cores"])


def _gpus(r: dict[str, Any]) -> str:
    gpus = r.get("gpus") or []
    if not gpus:
        return "-"
    return f"{r.get('free_gpus', 0)}/{len(gpus)}"


def _errors(member: dict[str, Any], r: dict[str, Any]) -> str:
    parts = []
    if member.get("incompatible_reason"):
        parts.append(f"incompatible: {member['incompatible_reason']}")
    if member.get("draining"):
        parts.append("draining")
    elif r.get("accepting") is False:
        parts.append("not accepting")
    parts += [f"{e} sampler failed" for e in r.get("errors") or ()]
    return "; ".join(parts) or "-"


def _row(member: dict[str, Any]) -> dict[str, Any]:
    """The JSON form of one row: identity, state and the flat resources."""
    return {
        "name": member.get("name"),
        "host_id": member.get("host_id"),
        "url": member.get("url"),
        "self": bool(member.get("self")),
        "status": _status(member),
        "code_version": member.get("code_version"),
        "tags": list(member.get("tags") or ()),
        "incompatible_reason": member.get("incompatible_reason"),
        "draining": bool(member.get("draining")),
        "age_s": _age(member),
        "active_count": member.get("active_count", 0),
        "inactive_count": member.get("inactive_count", 0),
        "resources": member_resources(member),
    }


def summary(
    max_age: MaxAge = 0.0,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            metavar="N",
            parser=option(lambda t: parse_int(t, low=0, what="--limit")),
            help="At most N rows (0 = all).",
        ),
    ] = 0,
    long: Annotated[bool, typer.Option("--long", help="Also versions and tags.")] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 20.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Each member's load as the entry host last heard it: cores, CPU, memory, GPUs."""
    newest = max_age if max_age > 0 else DEFAULT_MAX_AGE
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    members = gossip_members(session)
    shown: list[dict[str, Any]] = []
    stale: list[str] = []
    for member in members:
        age = _age(member)
        if age is None or age > newest:
            stale.append(str(member.get("name")))
            continue
        shown.append(member)
    if limit:
        shown = shown[:limit]
    if json_:
        print_json({"hosts": [_row(m) for m in shown], "stale": stale, "max_age_s": newest})
    elif shown:
        columns = ["host", "status", "age", "cores", "cpu%", "load/cpu", "ram free"]
        columns += ["work free", "gpus", "active", "inactive", "errors"]
        if long:
            columns += ["version", "tags"]
        rows = []
        for m in shown:
            r = member_resources(m)
            row = [
                str(m.get("name")) + (" (entry)" if m.get("self") else ""),
                _status(m),
                _seconds(_age(m)),
                _cores(r),
                str(r["cpu_percent"]) if "cpu_percent" in r else "-",
                f"{r['load_per_cpu']:.2f}" if "load_per_cpu" in r else "-",
                _size(r.get("free_memory_bytes")),
                _size(r.get("free_temp_bytes")),
                _gpus(r),
                str(m.get("active_count", 0)),
                str(m.get("inactive_count", 0)),
                _errors(m, r),
            ]
            if long:
                row += [str(m.get("code_version") or "-"), ",".join(m.get("tags") or ()) or "-"]
            rows.append(row)
        table("Mesh Summary", columns, rows)
    else:
        print(f"No host has a load summary newer than {newest:g}s.")
    if stale and not json_:
        session.info(f"left out (no load within {newest:g}s): {', '.join(stale)}")
    if not shown:
        raise typer.Exit(EXIT_FAILED)
