"""`submit_compute_job_group` (jobs.md §4.1): a collector and a batch of jobs, durably.

The submitter may be a paglet's context, an in-process `Host`, or the URL of a running
host (a laptop script beside its `paglets host`). Agent ids are derived from the group id
and job key, so calling again with the same `group_id` resumes an interrupted submission
instead of creating a second copy of anything.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

from paglets.core.errors import DuplicateAgentError, PagletError, error_to_wire
from paglets.core.messages import Message
from paglets.serialization.names import qualified_name
from paglets.system.compute_slots.collector import (
    ResultCollectorPaglet,
    encode_initial_state,
)
from paglets.system.compute_slots.group_models import ComputeJobGroupSubmission

__all__ = [
    "WARNING_COLLECTOR_ON_SUBMITTER",
    "ComputeJobGroupSubmission",
    "HostAtUrl",
    "collector_agent_id",
    "job_agent_id",
    "new_group_id",
    "submit_compute_job_group",
]

WARNING_COLLECTOR_ON_SUBMITTER = "collector-on-submitter"
DEFAULT_COLLECTOR_TAG = "collector"
_ID_NAMESPACE = uuid.UUID("6f1c1c52-2f0e-4d5b-9a53-0c8e6d1b7a10")
_CREATE_WORKERS = 8


def new_group_id() -> str:
    return f"grp-{time.strftime('%Y%m%d', time.gmtime())}-{os.urandom(3).hex()}"


def job_key_for(group_id: str, index: int, total: int) -> str:
    width = max(4, len(str(total)))
    return f"{group_id}-{index + 1:0{width}d}"


def collector_agent_id(group_id: str) -> str:
    """The collector's agent id: a function of the group id, so a resumed submission finds
    the collector it created before."""
    return "collector-" + uuid.uuid5(_ID_NAMESPACE, group_id).hex


def job_agent_id(group_id: str, job_key: str) -> str:
    return uuid.uuid5(_ID_NAMESPACE, f"{group_id}\x00{job_key}").hex


# -- where the submission runs ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HostAtUrl:
    """A running host reached over HTTP through `client` (default `HostClient.default()`,
    which reads the mesh key from the environment). A plain URL string means the same."""

    url: str
    client: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Member:
    name: str
    url: str
    host_id: str
    tags: tuple[str, ...]
    online: bool
    active_count: int


class _Submitter:
    """The three kinds of `context_or_host`, behind one small interface."""

    def __init__(self, context_or_host: Any) -> None:
        from paglets.runtime.host import Host

        self.client: Any = None
        self.host: Any = None
        self.context: Any = None
        if isinstance(context_or_host, str):
            context_or_host = HostAtUrl(context_or_host)
        if isinstance(context_or_host, HostAtUrl):
            from paglets.remote.client import HostClient

            self.client = context_or_host.client or HostClient.default()
            self.url = context_or_host.url.rstrip("/")
            health = self.client.health(self.url, timeout=10.0)
            self.name = str(health.get("name") or "")
            self.host_id = str(health.get("host_id") or "")
            self.url = str(health.get("address") or self.url).rstrip("/")
        elif isinstance(context_or_host, Host):
            self.host = context_or_host
        elif hasattr(context_or_host, "create_paglet") and hasattr(context_or_host, "_host"):
            self.context = context_or_host
            self.host = context_or_host._host
        else:
            raise TypeError(
                "submit_compute_job_group: context_or_host must be a paglet context, a Host "
                f"or a host URL string, got {type(context_or_host).__name__}"
            )
        if self.host is not None:
            self.url = self.host.address.rstrip("/")
            self.name = self.host.name
            self.host_id = self.host.host_id

    def members(self) -> list[_Member]:
        if self.client is not None:
            rows = self.client.list_hosts(self.url, timeout=10.0)
        else:
            rows = [r.to_wire() for r in self.host.list_hosts()]
        out = []
        for row in rows:
            out.append(
                _Member(
                    name=str(row.get("name") or ""),
                    url=str(row.get("url") or "").rstrip("/"),
                    host_id=str(row.get("host_id") or ""),
                    tags=tuple(row.get("tags") or ()),
                    online=bool(row.get("online", True)) and row.get("status") != "dead",
                    active_count=int(row.get("active_count") or 0),
                )
            )
        return out

    def proxy(self, agent_id: str, url: str) -> Any:
        from paglets.remote.proxy import PagletProxy

        if self.client is not None:
            return PagletProxy(url, agent_id, client=self.client)
        return self.host.proxy(agent_id) if self._local(url) else PagletProxy(url, agent_id)

    def _local(self, url: str) -> bool:
        return self.host is not None and self.host.is_local_url(url)

    def create(self, url: str, cls: type, state: Any, agent_id: str) -> Any:
        if self.client is not None:
            return self.client.create_agent(url, cls, None, state, agent_id=agent_id)
        if self.context is not None:
            return self.context.create_paglet(cls, state, host_url=url, agent_id=agent_id)
        return self.host.create_remote(url, cls, state, agent_id=agent_id)

    def send(self, proxy: Any, kind: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        return proxy.send(Message(kind, args), timeout=timeout)


# -- the submission ---------------------------------------------------------------------


def submit_compute_job_group(
    context_or_host: Any,
    job_cls: type,
    job_states: Sequence[Any],
    *,
    collector_cls: type = ResultCollectorPaglet,
    collector_state: Any = None,
    collector_host_url: str | None = None,
    group_id: str | None = None,
    return_home_when_complete: bool = False,
    job_metadata: Sequence[dict[str, Any] | None] | dict[str, Any] | None = None,
    collector_host_tag: str | None = None,
    deadline_seconds: float = 0.0,
    member_timeout_seconds: float = 0.0,
    max_group_retries: int = 0,
    priority: int | None = None,
    owner: str | None = None,
) -> ComputeJobGroupSubmission:
    """Create a collector and one job per state; return once every job is durably created.

    `context_or_host` is a paglet context, an in-process `Host`, or the URL of a running
    host (through `HostClient.default()`; `HostAtUrl(url, client)` picks the client). `job_metadata` is one dict for all jobs or one
    per job. Calling again with the same `group_id` resumes (nothing is created twice).
    """
    states = list(job_states)
    job_class_name = qualified_name(job_cls)  # refuses __main__ and nested classes
    qualified_name(collector_cls)
    for state in states:
        qualified_name(type(state))
    if not states:
        raise ValueError("submit_compute_job_group: job_states is empty; give at least one state")
    metas = _metadata_list(job_metadata, len(states))
    group = group_id or new_group_id()
    submitter = _Submitter(context_or_host)
    warnings: list[str] = []

    collector_url = _collector_host(submitter, collector_host_url, collector_host_tag, warnings)
    collector_id = collector_agent_id(group)
    collector, collector_host_id = _ensure_collector(
        submitter,
        collector_cls,
        collector_state,
        collector_url,
        collector_id,
        group=group,
        job_class=job_class_name,
        return_home=return_home_when_complete,
        deadline_seconds=deadline_seconds,
        member_timeout_seconds=member_timeout_seconds,
        max_group_retries=max_group_retries,
        owner=owner or "",
    )
    known = _registered_agents(submitter, collector)

    keys = [job_key_for(group, i, len(states)) for i in range(len(states))]

    def prepare(key: str, state: Any) -> Any:
        names = {f.name for f in dataclasses.fields(state)}
        values: dict[str, Any] = {
            "group_id": group,
            "job_key": key,
            "collector_agent_id": collector_id,
            "collector_host_url": collector_url,
            "collector_host_id": collector_host_id,
        }
        if owner is not None:
            values["owner"] = owner
        if priority is not None:
            values["priority"] = priority
        return dataclasses.replace(state, **{k: v for k, v in values.items() if k in names})

    prepared = [prepare(key, state) for key, state in zip(keys, states, strict=True)]
    registrations = []
    for key, state, meta in zip(keys, prepared, metas, strict=True):
        entry: dict[str, Any] = {"job_key": key, "metadata": meta, "job_class": job_class_name}
        encoded = encode_initial_state(state)
        if encoded is not None:
            entry["initial_state"], entry["state_class"] = encoded
        registrations.append(entry)
    submitter.send(collector, "register_jobs", {"jobs": registrations, "job_class": job_class_name})

    jobs: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []

    def create(key: str, state: Any) -> tuple[str, Any, dict[str, Any] | None]:
        agent_id = known.get(key) or job_agent_id(group, key)
        if key in known:
            return key, submitter.proxy(agent_id, submitter.url), None
        try:
            proxy = submitter.create(submitter.url, job_cls, state, agent_id)
        except DuplicateAgentError:
            return key, submitter.proxy(agent_id, submitter.url), None
        except Exception as exc:
            return key, None, _creation_failure(group, key, agent_id, submitter, exc)
        return key, proxy, None

    pending = list(zip(keys, prepared, strict=True))
    if submitter.client is not None and len(pending) > 1:
        with concurrent.futures.ThreadPoolExecutor(min(_CREATE_WORKERS, len(pending))) as pool:
            outcomes = list(pool.map(lambda pair: create(*pair), pending))
    else:
        outcomes = [create(k, s) for k, s in pending]
    for key, proxy, failure in outcomes:
        if proxy is not None:
            jobs[key] = proxy
        if failure is not None:
            errors.append(failure)
            submitter.send(collector, "job_failure", failure)

    submitter.send(
        collector,
        "register_jobs",
        {
            "jobs": [
                {"job_key": k, "agent_id": p.agent_id, "host_url": submitter.url}
                for k, p in jobs.items()
            ]
        },
    )
    return ComputeJobGroupSubmission(
        group_id=group, collector=collector, jobs=jobs, creation_errors=errors, warnings=warnings
    )


def _metadata_list(job_metadata: Any, count: int) -> list[dict[str, Any]]:
    if job_metadata is None:
        return [{} for _ in range(count)]
    if isinstance(job_metadata, dict):
        return [dict(job_metadata) for _ in range(count)]
    metas = [dict(m or {}) for m in job_metadata]
    if len(metas) != count:
        raise ValueError(
            f"job_metadata has {len(metas)} entries for {count} job states; give one dict "
            "for all jobs or exactly one per state"
        )
    return metas


def _collector_host(
    submitter: _Submitter, explicit: str | None, tag: str | None, warnings: list[str]
) -> str:
    """jobs.md §4.1 step 2: explicit URL, else the best online host with the tag (or
    `collector`), else the submitting host with a warning."""
    if explicit:
        return explicit.rstrip("/")
    members = [m for m in submitter.members() if m.online and m.url]
    wanted = tag or DEFAULT_COLLECTOR_TAG
    tagged = [m for m in members if wanted in m.tags]
    if tagged:
        # Best: not the submitter (a laptop may leave), then the least busy.
        tagged.sort(key=lambda m: (m.url == submitter.url, m.active_count, m.name))
        return tagged[0].url
    warnings.append(WARNING_COLLECTOR_ON_SUBMITTER)
    return submitter.url


def _ensure_collector(
    submitter: _Submitter,
    collector_cls: type,
    collector_state: Any,
    url: str,
    agent_id: str,
    *,
    group: str,
    job_class: str,
    return_home: bool,
    deadline_seconds: float,
    member_timeout_seconds: float,
    max_group_retries: int,
    owner: str,
) -> tuple[Any, str]:
    state = collector_state if collector_state is not None else collector_cls.state_class()()
    names = {f.name for f in dataclasses.fields(state)}
    values = {
        "group_id": group,
        "job_class": job_class,
        "home_host_id": submitter.host_id,
        "home_host_name": submitter.name,
        "home_host_url": submitter.url,
        "return_home_when_complete": return_home,
        "deadline_seconds": deadline_seconds,
        "member_timeout_seconds": member_timeout_seconds,
        "max_group_retries": max_group_retries,
        "owner": owner,
    }
    state = dataclasses.replace(state, **{k: v for k, v in values.items() if k in names})
    host_id = next((m.host_id for m in submitter.members() if m.url == url), "")
    try:
        proxy = submitter.create(url, collector_cls, state, agent_id)
    except DuplicateAgentError:
        proxy = submitter.proxy(agent_id, url)
    return proxy, host_id


def _registered_agents(submitter: _Submitter, collector: Any) -> dict[str, str]:
    """job_key -> agent id of members the collector already knows were created."""
    known: dict[str, str] = {}
    offset: int | None = 0
    while offset is not None:
        page = submitter.send(collector, "summary", {"offset": offset, "limit": 1000})
        for row in page.get("members", []):
            if row.get("agent_id"):
                known[row["job_key"]] = row["agent_id"]
        offset = page.get("next_offset")
    return known


def _creation_failure(
    group: str, key: str, agent_id: str, submitter: _Submitter, exc: BaseException
) -> dict[str, Any]:
    wire = error_to_wire(exc) if isinstance(exc, PagletError) else {}
    return {
        "group_id": group,
        "job_key": key,
        "agent_id": agent_id,
        "host_name": submitter.name,
        "host_url": submitter.url,
        "result": None,
        "report_id": f"create-{agent_id}",
        "attempt": 0,
        "artifacts": [],
        "usage": {},
        "error": f"{type(exc).__name__}: {exc}",
        "kind": str(wire.get("error_type") or "exception"),
        "stage": "create",
        "stderr_tail": "",
        "cancelled": False,
    }
