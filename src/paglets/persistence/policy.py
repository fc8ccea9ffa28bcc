"""How a paglet sleeps and wakes: the deactivation policy, request, and inactive-record values.

These are plain value types with a wire form (`to_wire`/`from_wire`). The wire shapes are
paglets 2.0's, so records exported with `Host.export_inactive_record` read the same. The
runtime keeps the live records in the host's SQLite store (`paglets.persistence.store`);
these types are what users and the HTTP API see.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeactivationPolicy", "DeactivationRequest", "InactiveRecord", "QueuedMessage"]

INACTIVE_RECORD_SCHEMA_VERSION = 1


def _require_bool(owner: str, name: str, value: Any) -> None:
    # `bool("false")` is True: a string or int that slipped through must fail loudly.
    if type(value) is not bool:
        raise TypeError(f"{owner}.{name} must be a bool (True or False), got {value!r}")


def _require_number(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}.{name} must be a number (epoch seconds) or None, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{owner}.{name} must be a finite number of seconds, got {value!r}")
    return number


def _require_str(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{owner}.{name} must be a str, got {value!r}")


def _require_mapping(owner: str, payload: Any) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ValueError(f"{owner} wire form must be a JSON object, got {type(payload).__name__}")
    return payload


def _wire_error(owner: str, exc: Exception) -> ValueError:
    # Wire input is data, not code: report a bad payload as ValueError (HTTP 400).
    return ValueError(f"invalid {owner} wire form: {exc}")


@dataclass(frozen=True, slots=True)
class DeactivationPolicy:
    """What may wake an inactive paglet, and whether messages wait for it.

    `activate_at` is an absolute time in epoch seconds (see `after()` for a delay).
    """

    activate_on_message: bool = True
    queue_messages_when_inactive: bool = True
    activate_on_startup: bool = False
    activate_at: float | None = None

    def __post_init__(self) -> None:
        _require_bool("DeactivationPolicy", "activate_on_message", self.activate_on_message)
        _require_bool(
            "DeactivationPolicy",
            "queue_messages_when_inactive",
            self.queue_messages_when_inactive,
        )
        _require_bool("DeactivationPolicy", "activate_on_startup", self.activate_on_startup)
        if self.activate_at is not None:
            at = _require_number("DeactivationPolicy", "activate_at", self.activate_at)
            object.__setattr__(self, "activate_at", at)

    @classmethod
    def after(cls, seconds: float, **kw: Any) -> DeactivationPolicy:
        """A policy whose timer fires `seconds` from now (other fields as keywords)."""
        delay = _require_number("DeactivationPolicy.after", "seconds", seconds)
        return cls(activate_at=time.time() + delay, **kw)

    def to_wire(self) -> dict[str, Any]:
        return {
            "activate_on_message": self.activate_on_message,
            "queue_messages_when_inactive": self.queue_messages_when_inactive,
            "activate_on_startup": self.activate_on_startup,
            "activate_at": self.activate_at,
        }

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any] | DeactivationPolicy) -> DeactivationPolicy:
        if isinstance(payload, DeactivationPolicy):
            return payload
        data = _require_mapping("DeactivationPolicy", payload)
        try:
            return cls(
                activate_on_message=data.get("activate_on_message", True),
                queue_messages_when_inactive=data.get("queue_messages_when_inactive", True),
                activate_on_startup=data.get("activate_on_startup", False),
                activate_at=data.get("activate_at"),
            )
        except (TypeError, ValueError) as exc:
            raise _wire_error("DeactivationPolicy", exc) from None


@dataclass(frozen=True, slots=True)
class DeactivationRequest:
    """Why a paglet is being deactivated, who asked, and the policy it sleeps under.

    `source` is set by the runtime: `"self"`, `"external"`, `"host"`,
    `"resident-service-manager"` or `"transfer"`. `policy` may also be given as its wire dict.
    """

    reason: str = "deactivate"
    source: str = "external"
    policy: DeactivationPolicy | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require_str("DeactivationRequest", "reason", self.reason)
        _require_str("DeactivationRequest", "source", self.source)
        if self.policy is not None and not isinstance(self.policy, DeactivationPolicy):
            if not isinstance(self.policy, Mapping):
                raise TypeError(
                    "DeactivationRequest.policy must be a DeactivationPolicy, its wire dict "
                    f"or None, got {self.policy!r}"
                )
            object.__setattr__(self, "policy", DeactivationPolicy.from_wire(self.policy))
        if not isinstance(self.metadata, Mapping):
            raise TypeError(f"DeactivationRequest.metadata must be a dict, got {self.metadata!r}")
        if type(self.metadata) is not dict:
            object.__setattr__(self, "metadata", dict(self.metadata))

    def to_wire(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "source": self.source,
            "policy": None if self.policy is None else self.policy.to_wire(),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any] | DeactivationRequest) -> DeactivationRequest:
        if isinstance(payload, DeactivationRequest):
            return payload
        data = _require_mapping("DeactivationRequest", payload)
        policy = data.get("policy")
        metadata = data.get("metadata")
        try:
            return cls(
                reason=data.get("reason", "deactivate"),
                source=data.get("source", "external"),
                policy=None if policy is None else DeactivationPolicy.from_wire(policy),
                metadata={} if metadata is None else metadata,
            )
        except (TypeError, ValueError) as exc:
            raise _wire_error("DeactivationRequest", exc) from None


def _message_wire(message: Any) -> Any:
    to_wire = getattr(message, "to_wire", None)
    return to_wire() if callable(to_wire) else message


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message waiting for an inactive paglet: its wire form, send mode and arrival time."""

    message: Any
    oneway: bool
    queued_at: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "message": _message_wire(self.message),
            "oneway": self.oneway,
            "queued_at": self.queued_at,
        }

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any] | QueuedMessage) -> QueuedMessage:
        if isinstance(payload, QueuedMessage):
            return payload
        data = _require_mapping("QueuedMessage", payload)
        oneway = data.get("oneway", False)
        queued_at = data.get("queued_at", 0.0)
        try:
            _require_bool("QueuedMessage", "oneway", oneway)
            queued = _require_number("QueuedMessage", "queued_at", queued_at)
        except (TypeError, ValueError) as exc:
            raise _wire_error("QueuedMessage", exc) from None
        return cls(message=data.get("message"), oneway=oneway, queued_at=queued)


@dataclass(frozen=True, slots=True)
class InactiveRecord:
    """A sleeping paglet as paglets 2.0 wrote it to `inactive/<id>.json`.

    Kept as the import/export format; the runtime itself stores rows in SQLite.
    """

    envelope: Any
    policy: DeactivationPolicy
    request: DeactivationRequest | None
    deactivated_at: float
    queued_messages: tuple[QueuedMessage, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema_version": INACTIVE_RECORD_SCHEMA_VERSION,
            "envelope": _message_wire(self.envelope),
            "policy": self.policy.to_wire(),
            "request": None if self.request is None else self.request.to_wire(),
            "deactivated_at": self.deactivated_at,
            "queued_messages": [queued.to_wire() for queued in self.queued_messages],
        }

    @classmethod
    def from_wire(cls, payload: Mapping[str, Any] | InactiveRecord) -> InactiveRecord:
        if isinstance(payload, InactiveRecord):
            return payload
        data = _require_mapping("InactiveRecord", payload)
        policy = data.get("policy")
        request = data.get("request")
        queued = data.get("queued_messages") or []
        if not isinstance(queued, list | tuple):
            raise ValueError(
                f"InactiveRecord.queued_messages must be a list, got {type(queued).__name__}"
            )
        deactivated_at = data.get("deactivated_at", 0.0)
        try:
            at = _require_number("InactiveRecord", "deactivated_at", deactivated_at)
        except (TypeError, ValueError) as exc:
            raise _wire_error("InactiveRecord", exc) from None
        return cls(
            envelope=data.get("envelope"),
            policy=DeactivationPolicy() if policy is None else DeactivationPolicy.from_wire(policy),
            request=None if request is None else DeactivationRequest.from_wire(request),
            deactivated_at=at,
            queued_messages=tuple(QueuedMessage.from_wire(item) for item in queued),
        )
