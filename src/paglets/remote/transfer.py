"""`TransferTicket`: where and how a paglet moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paglets.core.runtime_values import ArrivalMode, enum_from_wire

__all__ = ["TransferTicket"]


@dataclass(frozen=True, slots=True)
class TransferTicket:
    """A move's destination and limits.

    `timeout` bounds the departure turn, PREPARE and COMMIT; `retries` repeat PREPARE with
    the same transfer id (never a second copy).
    """

    destination: str
    timeout: float = 10.0
    retries: int = 0
    retry_interval: float = 0.25
    required_capabilities: tuple[str, ...] = ()
    expected_code_version: str | None = None
    arrival_mode: ArrivalMode = ArrivalMode.ACTIVATE
    required_tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.destination, str) or not self.destination.strip():
            raise ValueError(
                "TransferTicket.destination must be a host URL or mesh name, e.g. 'http://127.0.0.1:8766'"
            )
        if not isinstance(self.timeout, int | float) or self.timeout <= 0:
            raise ValueError(
                f"TransferTicket.timeout must be a positive number of seconds, got {self.timeout!r}"
            )
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"TransferTicket.retries must be an int >= 0, got {self.retries!r}")
        if not isinstance(self.retry_interval, int | float) or self.retry_interval < 0:
            raise ValueError(
                f"TransferTicket.retry_interval must be >= 0, got {self.retry_interval!r}"
            )
        object.__setattr__(self, "required_capabilities", tuple(self.required_capabilities))
        object.__setattr__(
            self, "required_tags", tuple(t.strip().lower() for t in self.required_tags)
        )
        object.__setattr__(
            self, "arrival_mode", enum_from_wire(ArrivalMode, self.arrival_mode, "arrival_mode")
        )

    @classmethod
    def from_target(cls, target: str | TransferTicket) -> TransferTicket:
        if isinstance(target, TransferTicket):
            return target
        if isinstance(target, str):
            return cls(destination=target)
        raise TypeError(
            f"a move target is a URL, a mesh host name or a TransferTicket, got {type(target).__name__}"
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "timeout": self.timeout,
            "retries": self.retries,
            "retry_interval": self.retry_interval,
            "required_capabilities": list(self.required_capabilities),
            "expected_code_version": self.expected_code_version,
            "arrival_mode": self.arrival_mode.value,
            "required_tags": list(self.required_tags),
        }

    @classmethod
    def from_wire(cls, payload: dict[str, Any]) -> TransferTicket:
        if not isinstance(payload, dict) or "destination" not in payload:
            raise ValueError("a transfer ticket needs at least 'destination'")
        known = {
            k: payload[k]
            for k in cls.__dataclass_fields__
            if k in payload and payload[k] is not None
        }
        for key in ("required_capabilities", "required_tags"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)
