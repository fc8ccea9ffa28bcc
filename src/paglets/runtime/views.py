"""Read-only views of a host's paglets: state snapshots, info, summaries, exports."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import msgspec

from paglets.core.errors import InvalidAgentError
from paglets.core.ids import validate_agent_id
from paglets.persistence.policy import DeactivationPolicy, DeactivationRequest
from paglets.serialization import codec

if TYPE_CHECKING:
    from paglets.runtime.host import Host

__all__ = ["Views"]


class Views:
    def __init__(self, host: Host) -> None:
        self.host = host

    def get_state(self, agent_id: str, state_cls: Any = None) -> Any:
        """A snapshot of the state (a copy), for live and inactive paglets."""
        validate_agent_id(agent_id)
        cell = self.host.registry.live.get(agent_id)
        if cell is not None:
            with cell.paglet.locked():
                data = codec.encode_state(cell.paglet.state)
            own_cls: type = cell.info.cls.state_class()
        else:
            row = self.host.store.get_agent(agent_id)
            if row is None:
                raise self.host.missing(agent_id)
            spec = self.host.classes.get(row.class_name)
            own_cls = spec.state_cls
            data = row.state
            if row.state_version < spec.state_version:
                return self.host.lifecycle._decode_stored(spec, row)
        state = codec.decode_state(own_cls, data)
        if state_cls is None or state_cls is own_cls:
            return state
        return codec.dataclass_from_wire(state_cls, codec.dataclass_to_wire(state))

    def agent_info(self, agent_id: str) -> dict[str, Any]:
        validate_agent_id(agent_id)
        cell = self.host.registry.live.get(agent_id)
        if cell is not None:
            info = cell.info
            paglet = cell.paglet
            return {
                "agent_id": agent_id,
                "class_name": info.class_name,
                "state_class_name": info.state_class_name,
                "host": self.host.name,
                "address": self.host.address,
                "active": True,
                "crashed": False,
                "exitcode": None,
                "error": None,
                "pid": getattr(cell.paglet, "pid", None) or os.getpid(),
                "mailbox": {
                    "queued": cell.queued_count(),
                    "in_flight": 1 if cell.busy else 0,
                    "delivered": cell.delivered,
                    "failed": cell.failed,
                },
                "resources": paglet._resources.status() if paglet._resources is not None else {},
                "isolation": info.cls.ISOLATION,
                "epoch": info.epoch,
                "home_url": info.home_url,
                "run_error": info.run_error,
                "created_at": info.created_at,
                "checkpointed_at": info.checkpointed_at,
                "policy": None,
                "queued_messages": 0,
            }
        row = self.host.store.get_agent(agent_id)
        if row is None:
            raise self.host.missing(agent_id)
        return {
            "agent_id": agent_id,
            "class_name": row.class_name,
            "state_class_name": row.state_class_name,
            "host": self.host.name,
            "address": self.host.address,
            "active": False,
            "crashed": row.status == "crashed",
            "exitcode": row.meta.get("exitcode"),
            "error": row.meta.get("error"),
            "pid": None,
            "deactivated_at": row.deactivated_at,
            "isolation": row.meta.get("isolation", "host"),
            "epoch": row.epoch,
            "home_url": row.home_url,
            "run_error": None,
            "created_at": row.created_at,
            "checkpointed_at": row.checkpointed_at,
            "policy": row.policy,
            "queued_messages": self.host.store.count_queued(agent_id),
        }

    def list_agents(
        self,
        *,
        active: bool = True,
        inactive: bool = False,
        include_state: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must be >= 0")
        out: list[dict[str, Any]] = []
        if active:
            cells = list(self.host.registry.live.values())
            for cell in cells[offset : None if limit is None else offset + limit]:
                summary = self._summary(
                    cell.agent_id, cell.info.class_name, cell.info.state_class_name, True
                )
                if include_state:
                    summary["state"] = codec.to_wire_form(self.get_state(cell.agent_id))
                out.append(summary)
            offset = max(0, offset - len(cells))
            if limit is not None:
                limit = max(0, limit - len(out))
                if limit == 0:
                    return out
        if inactive:
            for row in self.host.store.list_agents(
                status="inactive", offset=offset, limit=limit, with_state=include_state
            ):
                summary = self._summary(row.agent_id, row.class_name, row.state_class_name, False)
                if include_state:
                    summary["state"] = codec.to_wire_form(self.get_state(row.agent_id))
                out.append(summary)
        return out

    def _summary(
        self, agent_id: str, class_name: str, state_class_name: str, active: bool
    ) -> dict[str, Any]:
        return {
            "agent_id": agent_id,
            "class_name": class_name,
            "state_class_name": state_class_name,
            "host": self.host.name,
            "address": self.host.address,
            "active": active,
        }

    def export_inactive_record(self, agent_id: str) -> dict[str, Any]:
        """paglets 2.0's JSON layout of an inactive record."""
        row = self.host.store.get_agent(validate_agent_id(agent_id))
        if row is None or row.status != "inactive":
            raise InvalidAgentError(f"no inactive paglet {agent_id!r} on host {self.host.name!r}")
        state = codec.json_safe(codec.to_wire_form(self.get_state(agent_id)))
        queued = []
        for q in self.host.store.queued_messages(agent_id):
            queued.append(
                {
                    "message": codec.json_safe(msgspec.msgpack.decode(q.payload)),
                    "oneway": q.oneway,
                    "queued_at": q.queued_at,
                }
            )
        return {
            "schema_version": 1,
            "envelope": {
                "agent_id": agent_id,
                "agent_class_name": row.class_name,
                "state_class_name": row.state_class_name,
                "state": state,
                "epoch": row.epoch,
            },
            "policy": row.policy or DeactivationPolicy().to_wire(),
            "request": row.request or DeactivationRequest().to_wire(),
            "deactivated_at": row.deactivated_at,
            "queued_messages": queued,
        }
