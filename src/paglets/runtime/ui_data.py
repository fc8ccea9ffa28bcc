"""What the dashboard shows that no single API route answers: a paglet followed wherever it
moved, with its location history, and the mesh with each member's figures.

A browser may only call the host that served the page (other hosts are other origins), so
the host gathers for it: it asks other members with its own client, which carries the mesh
key, and the key never reaches the browser. Everything here is blocking and runs on the
host's worker pool.
"""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from paglets.core.ids import validate_agent_id
from paglets.remote.membership import Member, StoredSummary, describe
from paglets.remote.mesh_wire import ALIVE

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["HISTORY_KINDS", "mesh_view", "paglet_detail"]

MAX_HOPS = 8  # forwarding pointers followed, and hosts asked for a paglet's history
EVENTS_PER_HOST = 500
SHOWN_EVENTS = 200
REMOTE_TIMEOUT = 3.0
HEALTH_TIMEOUT = 2.0
MAX_HEALTH_ASKED = 32
# Event kinds that say where a paglet was: the location history.
HISTORY_KINDS = frozenset(
    {
        "create",
        "arrival",
        "dispatch",
        "retract",
        "clone",
        "deactivate",
        "activate",
        "dispose",
        "paglet-crashed",
        "transfer-aborted",
        "arrival-aborted",
    }
)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- one paglet ------------------------------------------------------------------------


class _Peers:
    """Which URLs this host may send its key to while gathering: itself and the members of
    its mesh (network.md §1.3: the key goes to members, seeds and the operator's URLs, never
    to an address merely read somewhere). Without membership, the URLs its own records name
    are asked: they come from moves this host made or authenticated callers reported."""

    def __init__(self, host: Host) -> None:
        self.own = host.address.rstrip("/")
        node = host.mesh
        self.members: set[str] | None = None
        if node is not None:
            try:
                self.members = host._on_loop(lambda: {m.url.rstrip("/") for m in node.members()})
            except Exception:  # the loop is stopping: ask nobody else
                self.members = set()

    def allowed(self, url: str) -> bool:
        return url == self.own or self.members is None or url in self.members


def _locate(
    host: Host, agent_id: str, peers: _Peers, errors: list[str]
) -> tuple[dict[str, Any], str | None]:
    """Where the paglet lives now, following forwarding pointers; (location, its host URL
    or None when it lives nowhere this host can find)."""
    location = host.transfers.location(agent_id)
    url = host.address.rstrip("/")
    for _ in range(MAX_HOPS):
        if location.get("state") != "moved":
            break
        url = str(location.get("host_url") or "").rstrip("/")
        if not url:
            break
        if not peers.allowed(url):
            errors.append(f"{url}: not a member of this host's mesh, so not asked")
            return location, None
        try:
            location = host.peer_client.get_json(
                f"{url}/agents/{agent_id}/location", timeout=REMOTE_TIMEOUT
            )
        except Exception as exc:
            errors.append(f"{url}: {_error_text(exc)}")
            location = {**location, "state": "unreachable", "host_url": url}
            return location, None
    if location.get("state") in ("live", "inactive"):
        return location, str(location.get("host_url") or url).rstrip("/")
    return location, None


def _events_at(host: Host, url: str, agent_id: str) -> list[dict[str, Any]]:
    if url == host.address.rstrip("/"):
        return [e.to_wire() for e in host.events.list_events(0, EVENTS_PER_HOST, agent_id=agent_id)]
    query = urlencode({"agent_id": agent_id, "since": 0, "limit": EVENTS_PER_HOST})
    answer = host.peer_client.get_json(f"{url}/events?{query}", timeout=REMOTE_TIMEOUT)
    return list(answer.get("events") or ()) if isinstance(answer, dict) else []


def _trail(
    host: Host, start: str, agent_id: str, peers: _Peers, errors: list[str]
) -> tuple[list[Any], list[str]]:
    """The paglet's events on every host it came through: from `start`, each arrival's
    source is asked next (at most MAX_HOPS hosts, each once)."""
    events: list[dict[str, Any]] = []
    asked: list[str] = []
    todo = [start]
    while todo and len(asked) < MAX_HOPS:
        url = todo.pop(0)
        if url in asked:
            continue
        asked.append(url)
        try:
            found = _events_at(host, url, agent_id)
        except Exception as exc:
            errors.append(f"{url}: {_error_text(exc)}")
            continue
        events += found
        for event in found:
            data = event.get("data") or {}
            source = str(data.get("source") or "").rstrip("/")
            if event.get("kind") != "arrival" or not source or source in asked:
                continue
            if peers.allowed(source):
                todo.append(source)
            else:
                errors.append(f"{source}: not a member of this host's mesh, so not asked")
    events.sort(key=lambda e: (e.get("timestamp") or 0.0, e.get("event_id") or 0))
    return _departures_first(events), asked


def _departures_first(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The source records a move after the target recorded the arrival (the COMMIT is
    acknowledged first); a reader expects the departure first, so each dispatch or retract
    is put just before the arrival of the same epoch."""
    out = list(events)
    i = 0
    while i < len(out):
        event = out[i]
        data = event.get("data") or {}
        if event.get("kind") == "arrival" and data.get("epoch") is not None:
            for j in range(i + 1, len(out)):
                later = out[j]
                epoch = (later.get("data") or {}).get("epoch")
                if later.get("kind") == data.get("reason") and epoch == data.get("epoch"):
                    out.insert(i, out.pop(j))
                    i += 1
                    break
        i += 1
    return out


def paglet_detail(host: Host, agent_id: str) -> dict[str, Any]:
    """Summary, mailbox, location, location history and events of one paglet, wherever it
    is now. Parts that cannot be had are None, and `errors` says why."""
    validate_agent_id(agent_id)
    errors: list[str] = []
    peers = _Peers(host)
    location, url = _locate(host, agent_id, peers, errors)
    here = host.address.rstrip("/")
    summary = mailbox = None
    if url is not None:
        try:
            if url == here:
                summary = host.agent_info(agent_id)
            else:
                summary = host.peer_client.get_json(
                    f"{url}/agents/{agent_id}", timeout=REMOTE_TIMEOUT
                )
            mailbox = host.peer_client.get_json(
                f"{url}/agents/{agent_id}/mailbox", timeout=REMOTE_TIMEOUT
            )
        except Exception as exc:
            errors.append(f"{url}: {_error_text(exc)}")
    events, asked = _trail(host, url or here, agent_id, peers, errors)
    history = [e for e in events if e.get("kind") in HISTORY_KINDS]
    return {
        "agent_id": agent_id,
        "location": location,
        "summary": summary,
        "mailbox": mailbox,
        "history": history,
        "events": events[-SHOWN_EVENTS:],
        "events_total": len(events),
        "hosts_asked": asked,
        "errors": errors,
    }


# -- the mesh --------------------------------------------------------------------------


def _self_entry(host: Host, node: Any) -> dict[str, Any]:
    now = node.clock.time()
    me = Member(node.record, ALIVE, node.record.incarnation, now)
    # This host's own summaries (what it gossips about itself), decoded as a member's are.
    for kind, summary in node.book.own.items():
        me.summaries[kind] = StoredSummary(summary.version, summary.body, 0, now)
    entry = describe(me, now)
    entry["self"] = True
    return entry


def mesh_members(host: Host) -> list[dict[str, Any]]:
    """This host's member view (network.md §3.2), itself first; runs on the host's loop."""
    node = host.mesh
    if node is None:
        return []
    listed = [_self_entry(host, node)]
    now = node.clock.time()
    for member in node.members():
        entry = describe(member, now)
        entry["self"] = False
        listed.append(entry)
    return listed


def _counts_known(entry: dict[str, Any]) -> bool:
    load = (entry.get("resources") or {}).get("load")
    return isinstance(load, dict) and "active_count" in load


def mesh_view(host: Host, members: list[dict[str, Any]]) -> dict[str, Any]:
    """The members with figures: this host's own `/health`, and for alive members whose
    load summary does not carry paglet counts (yet), theirs, asked in parallel with a
    short timeout."""
    own = host.health()
    if not members:  # --no-mesh: this host alone
        members = [
            {
                "name": host.name,
                "url": host.address,
                "status": "alive",
                "code_version": host.mesh_version,
                "tags": list(host.tags),
                "properties": dict(host.properties),
                "self": True,
            }
        ]
    for entry in members:
        if entry.get("self"):
            entry["health"] = own
    wanted = [
        e
        for e in members
        if not e.get("self") and e.get("status") == "alive" and not _counts_known(e)
    ][:MAX_HEALTH_ASKED]
    if wanted:
        client = host.peer_client
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(wanted))) as pool:
            futures = {
                pool.submit(client.health, str(e["url"]), timeout=HEALTH_TIMEOUT): e for e in wanted
            }
            for future in concurrent.futures.as_completed(futures):
                entry = futures[future]
                try:
                    entry["health"] = future.result()
                except Exception as exc:
                    entry["health_error"] = _error_text(exc)
    return {
        "self": host.name,
        "code_version": host.mesh_version,
        "members": members,
    }
