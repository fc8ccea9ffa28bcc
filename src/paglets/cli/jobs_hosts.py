"""`paglets jobs hosts|status` (cli.md §4, jobs.md §8): answers from the entry host's
gossip table only. `hosts` asks the entry's `compute-slots` for `candidate_hosts` (ranked
from its membership table, no fan-out); `status` reads the entry's membership view.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer

from paglets.cli.errors import EXIT_FAILED
from paglets.cli.fanout import call_service
from paglets.cli.jobs_common import compute_contract, secs, slots
from paglets.cli.output import format_size
from paglets.cli.session import (
    ApiKeyEnv,
    Entry,
    Json,
    Quiet,
    Timeout,
    open_session,
    print_json,
    table,
)
from paglets.cli.values import parse_size

__all__ = ["hosts", "status"]


def hosts(
    cores: Annotated[int, typer.Option("--cores", "--cpu-cores", help="Cores needed.")] = 1,
    mem: Annotated[
        str, typer.Option("--mem", "--memory", metavar="SIZE", help="Memory needed.")
    ] = "0",
    temp: Annotated[
        str,
        typer.Option("--temp", "--disk", "--temp-storage", metavar="SIZE", help="Temp storage."),
    ] = "0",
    gpu: Annotated[bool, typer.Option("--gpu", help="Needs a GPU.")] = False,
    gpu_memory: Annotated[
        str, typer.Option("--gpu-memory", metavar="SIZE", help="GPU memory (bare number: MB).")
    ] = "0",
    tag: Annotated[list[str] | None, typer.Option("--tag", "--require-tag")] = None,
    prefer_tag: Annotated[list[str] | None, typer.Option("--prefer-tag")] = None,
    exclude_tag: Annotated[list[str] | None, typer.Option("--exclude-tag")] = None,
    exclude_host: Annotated[list[str] | None, typer.Option("--exclude-host")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", metavar="KEY>=V", help="Property constraint.")
    ] = None,
    allow_home: Annotated[bool, typer.Option("--allow-home", help="The entry may run it.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Candidates shown.")] = 5,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Candidate hosts for a job with these needs, then every rejection reason."""
    cs = slots()
    session = open_session(entry, timeout, api_key_env, json_, quiet)
    gpu_mb = gpu_memory.strip()
    gpu_bytes = int(gpu_mb) << 20 if gpu_mb.isdigit() else (parse_size(gpu_mb) or 0)
    request = cs.ComputeSlotRequest(
        request_id="cli",
        job_id="compute-job-cli",
        agent_id="cli",
        cpu_cores=cores,
        memory_bytes=parse_size(mem) or 0,
        temp_storage_bytes=parse_size(temp) or 0,
        requires_gpu=gpu,
        gpu_memory_mb=gpu_bytes >> 20,
        required_host_tags=tuple(tag or ()),
        preferred_host_tags=tuple(prefer_tag or ()),
        excluded_host_tags=tuple(exclude_tag or ()),
        excluded_host_names=tuple(exclude_host or ()),
        required_host_properties=tuple(where or ()),
        allow_home_compute=allow_home,
    )
    query = cs.CandidateHostsRequest(request=request, limit=limit, include_self=allow_home)
    from paglets.system.compute_slots.contract import OP_CANDIDATE_HOSTS

    reply = session.call(
        lambda: call_service(session, session.entry, compute_contract(), OP_CANDIDATE_HOSTS, query)
    )
    if json_:
        print_json(msgspec.to_builtins(reply))
    else:
        if reply.candidates:
            table(
                "Candidate Hosts",
                (
                    "host",
                    "fits now",
                    "expected start",
                    "score",
                    "cores",
                    "memory",
                    "temp",
                    "gpus",
                    "queue",
                    "tags",
                    "age",
                ),
                [
                    [
                        c.host_name,
                        "yes" if c.fits_now else "no",
                        secs(c.expected_start_seconds),
                        f"{c.score:.2f}",
                        f"{c.free_cpu_cores}/{c.job_cpu_cores}",
                        f"{format_size(c.free_memory_bytes)}/{format_size(c.memory_total_bytes)}",
                        f"{format_size(c.free_temp_bytes)}/{format_size(c.temp_total_bytes)}",
                        f"{c.free_gpus}/{c.gpus_total}",
                        str(c.queue_length),
                        ",".join(c.tags) or "-",
                        secs(c.age_seconds),
                    ]
                    for c in reply.candidates
                ],
            )
        else:
            print("No candidate host.")
        if reply.rejected:
            table(
                "Rejected Hosts",
                ("host", "reasons"),
                [[r.host, "; ".join(x.message for x in r.reasons)] for r in reply.rejected],
            )
    if not reply.candidates:
        raise typer.Exit(EXIT_FAILED)


def status(
    wide: Annotated[bool, typer.Option("--wide", help="Tags and properties too.")] = False,
    entry: Entry = None,
    json_: Json = False,
    timeout: Timeout = 5.0,
    api_key_env: ApiKeyEnv = None,
    quiet: Quiet = False,
) -> None:
    """Per host, from the entry's gossip table: resources, running, queued, draining, age."""
    from paglets.cli.mesh_summary import gossip_members, member_resources

    session = open_session(entry, timeout, api_key_env, json_, quiet)
    members = gossip_members(session)
    rows = []
    for m in members:
        r = member_resources(m)
        rows.append(
            {
                "host": m.get("name"),
                "url": m.get("url"),
                "status": m.get("status"),
                "job_cores": r.get("job_cores", r.get("logical_cpus")),
                "free_cpu_cores": r.get("free_cpu_cores"),
                "free_memory_bytes": r.get("free_memory_bytes"),
                "memory_total_bytes": r.get("memory_total_bytes"),
                "free_temp_bytes": r.get("free_temp_bytes"),
                "free_gpus": r.get("free_gpus"),
                "gpus": len(r.get("gpus") or ()),
                "running_jobs": r.get("running_jobs", 0),
                "queue_length": r.get("queue_length", 0),
                "accepting": r.get("accepting", True),
                "age_seconds": 0.0 if m.get("self") else r.get("load_age_s"),
                "tags": list(m.get("tags") or ()),
                "properties": dict(m.get("properties") or {}),
            }
        )
    if json_:
        print_json({"hosts": rows})
        return
    columns = [
        "host",
        "status",
        "cores",
        "memory",
        "temp",
        "gpus",
        "running",
        "queued",
        "draining",
        "age",
    ]
    if wide:
        columns += ["tags", "properties"]
    out = []
    for r in rows:
        line = [
            str(r["host"]),
            str(r["status"] or "-"),
            f"{r['free_cpu_cores'] if r['free_cpu_cores'] is not None else '-'}/{r['job_cores'] or '-'}",
            f"{format_size(r['free_memory_bytes'])}/{format_size(r['memory_total_bytes'])}",
            format_size(r["free_temp_bytes"]),
            f"{r['free_gpus'] or 0}/{r['gpus']}",
            str(r["running_jobs"]),
            str(r["queue_length"]),
            "no" if r["accepting"] else "yes",
            secs(r["age_seconds"]),
        ]
        if wide:
            line += [
                ",".join(r["tags"]) or "-",
                ",".join(f"{k}={v}" for k, v in sorted(r["properties"].items())) or "-",
            ]
        out.append(line)
    table("Compute Hosts", columns, out)
    if not rows:
        raise typer.Exit(EXIT_FAILED)
