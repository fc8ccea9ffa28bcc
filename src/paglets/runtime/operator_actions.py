"""What an operator does when something went wrong (cli.md §2, network.md §1.8 and §2.5):

* `restart_crashed`: `POST /agents/{id}/restart` brings a crashed paglet (its process
  died) back from its last checkpoint. Only crashed ones: an active paglet has nothing to
  restart and an inactive one is woken with `activate`.
* `resolve_transfer`: `POST /transfers/{tid}/resolve {decision}` ends a transfer whose
  other host is gone for good. The move protocol waits for that host forever by design
  (rows 9, 10, 12, 18), so only a person may decide:

  | this host holds | `keep-here` | `give-up` |
  | --- | --- | --- |
  | target, `PREPARED` (hooks done) | its prepared copy goes live (`COMMITTED`) | the copy is discarded (`ABORTED`) |
  | source, `COMMITTED` (never acknowledged) | refused: the state left with the decision | COMMIT is no longer resent (`ACKED`); STATUS still answers `COMMITTED`, so a target that comes back makes its copy live |

  Refused while the other host answers (a member alive in this host's view, or its
  `/health` answering within 2 s): then the protocol decides by itself. Every resolution
  is recorded in the transfer log (and as a `transfer-resolved` event).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from paglets.core.errors import (
    HostError,
    LifecycleError,
    PagletError,
    SerializationError,
    TransferError,
)
from paglets.core.ids import validate_agent_id
from paglets.runtime import local_hosts
from paglets.runtime.envelope import check_tid
from paglets.runtime.http_wire import decode_body, read_body, reply

if TYPE_CHECKING:
    from paglets.remote.proxy import PagletProxy
    from paglets.runtime.host import Host

__all__ = [
    "DECISIONS",
    "GIVE_UP",
    "KEEP_HERE",
    "ResolveBody",
    "operator_routes",
    "resolve_transfer",
    "restart_crashed",
]

KEEP_HERE, GIVE_UP = "keep-here", "give-up"
DECISIONS = (KEEP_HERE, GIVE_UP)
PEER_PROBE_TIMEOUT = 2.0


# -- restart ------------------------------------------------------------------------------


def restart_crashed(host: Host, agent_id: str) -> PagletProxy:
    """Restart a crashed paglet from its last checkpoint (`on_activation(reason="recover")`
    runs, queued messages follow). `LifecycleError` for one that is not crashed."""
    validate_agent_id(agent_id)
    if agent_id in host.registry.live:
        raise LifecycleError(
            f"paglet {agent_id!r} on host {host.name!r} is active, not crashed: there is "
            "nothing to restart",
            code="not-crashed",
        )
    row = host.store.get_agent(agent_id)
    if row is None:
        raise host.missing(agent_id)  # moved (a pointer: 307) or unknown (404)
    if row.status != "crashed":
        raise LifecycleError(
            f"paglet {agent_id!r} on host {host.name!r} is {row.status}, not crashed; "
            "wake an inactive paglet with `paglets agents activate`",
            code="not-crashed",
        )
    proxy = host.lifecycle.activate(agent_id, reason="restart")
    host.events.emit("paglet-restarted", agent_id=agent_id, class_name=row.class_name)
    return proxy


# -- resolve ------------------------------------------------------------------------------


class ResolveBody(msgspec.Struct):
    decision: str


def _peer_answers(host: Host, url: str) -> str | None:
    """Why the other host counts as present (None: gone, as far as can be told)."""
    wanted = local_hosts.normalise_url(url)
    if host.mesh is not None:
        for ref in host.list_hosts(include_self=False):
            if local_hosts.normalise_url(ref.url) == wanted and ref.status == "alive":
                return f"the mesh sees {ref.name!r} ({ref.url}) alive"
    try:
        health = host.peer_client.get_json(f"{url.rstrip('/')}/health", timeout=PEER_PROBE_TIMEOUT)
    except PagletError:
        return None
    name = health.get("name") if isinstance(health, dict) else None
    return f"{url} answers{f' (host {name!r})' if name else ''}"


def resolve_transfer(host: Host, tid: str, decision: str) -> dict[str, Any]:
    """End an open transfer whose other host is gone for good (table above)."""
    check_tid(tid)
    if decision not in DECISIONS:
        raise SerializationError(
            f"decision must be {KEEP_HERE!r} or {GIVE_UP!r}, got {decision!r}",
            code="invalid-body",
        )
    transfers = host.transfers
    record = transfers.log.get(tid)
    if record is None:
        raise HostError(f"no transfer {tid} on host {host.name!r}", code="unknown-transfer")
    where = f"transfer {tid} ({record.role} of {record.kind} of {record.agent_id!r})"
    resolvable = (record.role == "source" and record.status == "COMMITTED") or (
        record.role == "target" and record.status == "PREPARED" and record.hooks_done
    )
    if not resolvable:
        if record.status in ("PREPARING", "PREPARED"):
            why = "is still being prepared; it ends by itself at its ticket deadline"
        else:
            why = f"is already {record.status}: decided, nothing to resolve"
        raise TransferError(f"{where} on {host.name!r} {why}", code="transfer-conflict")
    present = _peer_answers(host, record.peer_url)
    if present is not None:
        raise TransferError(
            f"{where}: refused while the other host answers ({present}); the move protocol "
            "settles it by itself once both hosts talk",
            code="transfer-conflict",
        )
    if record.role == "source":
        outcome = _resolve_source(host, record, decision, where)
    else:
        outcome = _resolve_target(host, record, decision, where)
    host.events.emit(
        "transfer-resolved",
        agent_id=record.agent_id,
        data={"transfer_id": tid, "role": record.role, "decision": decision, **outcome},
    )
    return {
        "transfer_id": tid,
        "role": record.role,
        "agent_id": record.agent_id,
        "decision": decision,
        **outcome,
    }


def _resolution(decision: str) -> dict[str, Any]:
    return {"resolved": decision, "by": "operator", "at": time.time()}


def _resolve_source(host: Host, record: Any, decision: str, where: str) -> dict[str, Any]:
    if decision == KEEP_HERE:
        raise TransferError(
            f"{where} on {host.name!r}: the paglet's state left this host with the COMMITTED "
            f"decision, so it cannot be kept here; only {record.peer_url} holds it. Use "
            "--give-up to stop resending COMMIT (the target makes its copy live if it returns)",
            code="transfer-conflict",
        )
    # The decision stays COMMITTED (STATUS answers it); only the resends end.
    host.transfers.log.set_status(record.transfer_id, "ACKED", reply=_resolution(decision))
    return {"status": "ACKED", "proxy": None}


def _resolve_target(host: Host, record: Any, decision: str, where: str) -> dict[str, Any]:
    arrivals = host.transfers.arrivals
    with arrivals._decision(record.transfer_id):
        current = host.transfers.log.get(record.transfer_id, "target")
        if current is None or current.status != "PREPARED":
            state = "gone" if current is None else current.status
            raise TransferError(
                f"{where} was decided meanwhile ({state})", code="transfer-conflict"
            )
        if decision == KEEP_HERE:
            answer = arrivals.make_live(current)
            host.transfers.log.set_status(
                record.transfer_id, "COMMITTED", reply={**answer, **_resolution(decision)}
            )
            return {"status": "COMMITTED", "proxy": answer.get("proxy")}
        arrivals.drop_prepared(current)
        host.transfers.log.set_status(record.transfer_id, "ABORTED", reply=_resolution(decision))
        return {"status": "ABORTED", "proxy": None}


# -- routes -------------------------------------------------------------------------------


def operator_routes(host: Host) -> list[web.RouteDef]:
    """`POST /transfers/{tid}/resolve` (restart is an agent route: `http_routes`)."""

    async def resolve(request: web.Request) -> web.Response:
        data = await read_body(request, host.http.control_limit)
        body: ResolveBody = decode_body(request, data, ResolveBody)
        answer = await host.http.run_blocking(
            resolve_transfer, host, request.match_info["tid"], body.decision
        )
        return reply(request, answer)

    return [web.post("/transfers/{tid}/resolve", resolve)]
